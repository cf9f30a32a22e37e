"""The tenant site's blueprint: every page module of `portal.site` attaches its routes to `bp`.

It lives apart from the page modules so they depend on it, never on each other. A suspended
tenant's host answers every page with the suspension notice.
"""

from __future__ import annotations

from flask import Blueprint

from portal.errors import render_error
from portal.web import current_tenant

bp = Blueprint("site", __name__)


@bp.before_request
def refuse_unless_active():
    tenant = current_tenant()
    if tenant is not None and not tenant.active:
        return render_error(
            403,
            f"{tenant.name} is suspended",
            f"Sign-in to {tenant.name} is paused by your service provider. Your data is kept. "
            "Contact your provider's support to restore access.",
            suspended=True,
        )
    return None
