"""Flask-Login wiring for staff: the cookie holds a session token, the database the session."""

from __future__ import annotations

from flask import Flask, g, redirect, request, url_for
from flask_login import LoginManager, UserMixin, current_user

from portal.permissions import STAFF_ROLE_PERMISSIONS, Permission
from portal.web import actor_for, request_session


class SignedInStaff(UserMixin):
    def __init__(self, token: str, session_id: int, staff):
        self.token = token
        self.session_id = session_id
        self.staff = staff  # the model object at sign-in, a plain row of its columns after

    def get_id(self) -> str:
        return self.token

    @property
    def email(self) -> str:
        return self.staff.email

    @property
    def display_name(self) -> str:
        return self.staff.name or self.staff.email

    @property
    def role(self) -> str:
        return self.staff.role

    def can(self, permission: Permission) -> bool:
        return permission in STAFF_ROLE_PERMISSIONS.get(self.staff.role, frozenset())


def current_actor():
    if current_user.is_authenticated:
        return actor_for("staff", current_user.staff.id, current_user.email)
    return actor_for("anonymous", None, None)


def init_login(app: Flask) -> None:
    from portal.console.services import load_staff_session

    manager = LoginManager()
    manager.session_protection = None  # the token itself is rotated at every sign-in
    manager.init_app(app)

    @manager.user_loader
    def load(token: str):
        row = load_staff_session(request_session(), token)
        return SignedInStaff(token, row.session_id, row) if row else None

    @manager.unauthorized_handler
    def unauthorized():
        if request.headers.get("HX-Request") == "true":
            response = app.response_class(status=204)
            response.headers["HX-Redirect"] = url_for(
                "console.sign_in", next=request.full_path.rstrip("?")
            )
            return response
        return redirect(url_for("console.sign_in", next=request.full_path.rstrip("?")))

    @app.context_processor
    def _staff():
        return {
            "can": (lambda p: current_user.is_authenticated and current_user.can(p)),
            "Permission": Permission,
            "g": g,
        }
