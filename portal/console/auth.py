"""Flask-Login wiring for staff: the cookie holds a session token, the database the session.

With `STAFF_MFA_REQUIRED` (the default), a signed-in member without MFA reaches only the
enrolment on My account and sign-out until they have enrolled.
"""

from __future__ import annotations

from flask import Flask, current_app, g, request, url_for
from flask_login import LoginManager, UserMixin, current_user

from portal.permissions import STAFF_ROLE_PERMISSIONS, Permission
from portal.web import actor_for, full_page_redirect, request_session


class SignedInStaff(UserMixin):
    def __init__(self, token: str, session_id: int, staff, method: str = "password"):
        self.token = token
        self.session_id = session_id
        self.staff = staff  # the model object at sign-in, a plain row of its columns after
        self.method = method  # how this session's sign-in was completed

    @property
    def mfa_enabled(self) -> bool:
        return self.staff.mfa_enabled_at is not None

    @property
    def used_mfa(self) -> bool:
        """Whether this session's sign-in (or an enrolment in it) proved a second factor."""
        return self.method in ("totp", "backup_code")

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
    from portal.staff.sessions import load_staff_session

    manager = LoginManager()
    manager.session_protection = None  # the token itself is rotated at every sign-in
    manager.init_app(app)

    @manager.user_loader
    def load(token: str):
        row = load_staff_session(request_session(), token)
        return SignedInStaff(token, row.session_id, row, row.session_method) if row else None

    @manager.unauthorized_handler
    def unauthorized():
        return full_page_redirect(url_for("console.sign_in", next=request.full_path.rstrip("?")))

    @app.before_request
    def require_mfa_enrolment():
        """A member who must use MFA and has not enrolled can only enrol or sign out."""
        endpoint = request.endpoint or ""
        if not endpoint.startswith("console.") or endpoint in MFA_ENROLMENT_ENDPOINTS:
            return None
        if not mfa_enrolment_required():
            return None
        return full_page_redirect(url_for("console.account"))

    @app.context_processor
    def _staff():
        return {
            "can": (lambda p: current_user.is_authenticated and current_user.can(p)),
            "Permission": Permission,
            "g": g,
            "mfa_enrolment_required": mfa_enrolment_required(),
        }


# Reachable by a signed-in member whose MFA enrolment is required and not done.
MFA_ENROLMENT_ENDPOINTS = {
    "console.account",
    "console.account_mfa_start",
    "console.account_mfa_confirm",
    "console.sign_out",
    "console.sign_in",
    "console.sign_in_verify",
}


def mfa_enrolment_required() -> bool:
    """The signed-in member must enrol MFA before doing anything else."""
    return (
        current_user.is_authenticated
        and current_app.config["PORTAL"].staff_mfa_required
        and not current_user.mfa_enabled
    )
