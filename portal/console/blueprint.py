"""The staff console's blueprint: every page module of `portal.console` attaches its routes to
`bp`. It lives apart from the page modules so they depend on it, never on each other."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("console", __name__)
