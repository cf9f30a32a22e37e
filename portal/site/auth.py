"""Flask-Login wiring for tenant users: token in cookie, session row in the tenant's schema.

Permissions come with the session row on every request (one query: portal/auth/services.py
load_user_session), so removing a permission from a role takes effect on the next request.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from flask import Flask, g, redirect, request, url_for
from flask_login import LoginManager, UserMixin, current_user

from portal.auth import staff_access
from portal.permissions import Permission
from portal.web import actor_for, current_tenant, full_page_redirect, request_session

DEVICE_COOKIE = "portal_device"
# Reachable while MFA enrolment is overdue (besides every endpoint named site.mfa_*).
MFA_ENROLMENT_ENDPOINTS = {"site.account_security", "site.sign_out", "site.sign_in"}
DEVICE_COOKIE_SECONDS = 400 * 24 * 60 * 60


class SignedInUser(UserMixin):
    is_staff = False

    def __init__(self, token: str, session_id: int, user):
        self.token = token
        self.session_id = session_id
        self.user = user  # the model object at sign-in, a plain row of its columns after
        self._permissions: frozenset[str] | None = None

    def get_id(self) -> str:
        return self.token

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def email(self) -> str:
        return self.user.email

    @property
    def display_name(self) -> str:
        return self.user.name or self.user.email

    @property
    def mfa_enabled(self) -> bool:
        return self.user.mfa_enabled_at is not None

    @property
    def permissions(self) -> frozenset[str]:
        if self._permissions is None:
            from portal.accounts import roles

            if hasattr(self.user, "role_permissions"):  # the session row brought them
                self._permissions = roles.permissions_of(self.user.role_permissions)
            else:  # the User object of a sign-in in progress
                self._permissions = roles.permissions_for(request_session(), self.user.id)
        return self._permissions

    def can(self, permission: Permission | str) -> bool:
        return permission in self.permissions


class StaffVisitor(UserMixin):
    """MSP staff on a tenant's site through a console hand-off (portal/auth/staff_access.py):
    the staff role's tenant permissions, no account pages of their own."""

    is_staff = True
    mfa_enabled = True  # the tenant's MFA policy is for its own users
    session_id = None

    def __init__(self, token: str, visit):
        self.token = token
        self.visit = visit

    def get_id(self) -> str:
        return self.token

    @property
    def id(self) -> None:
        return None

    @property
    def email(self) -> str:
        return self.visit.email

    @property
    def display_name(self) -> str:
        return self.visit.name or self.visit.email

    @property
    def permissions(self) -> frozenset[str]:
        return self.visit.permissions

    def can(self, permission: Permission | str) -> bool:
        return permission in self.permissions


def current_actor():
    """Who acts, with the permissions they act with (a staff visit: the visit's), which the
    services check before granting anything or acting on another user (A10)."""
    if current_user.is_authenticated:
        if getattr(current_user, "is_staff", False):
            actor = actor_for("staff", current_user.visit.staff_id, current_user.email)
        else:
            actor = actor_for("user", current_user.user.id, current_user.email)
        return replace(actor, permissions=frozenset(current_user.permissions))
    return actor_for("anonymous", None, None)


def tenant_settings():
    """The tenant's security settings, read once per request."""
    if "security_settings" not in g:
        from portal.accounts.settings import security_settings

        g.security_settings = security_settings(request_session())
    return g.security_settings


def mfa_enrolment_state() -> tuple[str, datetime | None]:
    """For the signed-in user: ("none", None) when MFA is on or not required; ("grace",
    deadline) while the policy's grace period runs; ("required", None) once it is over."""
    from portal.accounts.settings import mfa_deadline, mfa_enforced_for

    if not current_user.is_authenticated or current_user.is_staff or current_user.mfa_enabled:
        return "none", None
    settings = tenant_settings()
    if not mfa_enforced_for(settings, current_user.permissions):
        return "none", None
    deadline = mfa_deadline(settings)
    if deadline is not None and deadline > datetime.now(UTC):
        return "grace", deadline
    return "required", None


def init_login(app: Flask) -> None:
    from portal.auth.services import load_user_session

    manager = LoginManager()
    manager.session_protection = None  # the token itself is rotated at every sign-in
    manager.init_app(app)

    @manager.user_loader
    def load(token: str):
        if token.startswith(staff_access.VISIT_PREFIX):
            from portal.queue import queues

            tenant = current_tenant()
            visit = staff_access.load(queues.redis, token, tenant.slug)
            if visit is None:
                return None
            # Re-checked in the database on every request (status, role, assignment, console
            # session), whatever Redis says; Flask-Login keeps the answer for the request.
            visit = staff_access.recheck(request_session(), visit, tenant.id)
            if visit is None:
                staff_access.end(queues.redis, token)
                return None
            return StaffVisitor(token, visit)
        row = load_user_session(request_session(), token, tenant_settings())
        return SignedInUser(token, row.session_id, row) if row else None

    @manager.unauthorized_handler
    def unauthorized():
        return full_page_redirect(url_for("site.sign_in", next=request.full_path.rstrip("?")))

    @app.before_request
    def require_mfa_enrolment():
        """Once the MFA policy's grace period is over, a signed-in user without MFA can only
        enrol (or sign out) until they have."""
        endpoint = request.endpoint or ""
        if current_user.is_authenticated and current_user.is_staff:
            # Staff visits have no account of their own on the tenant site.
            if endpoint.startswith(("site.account", "site.mfa_")):
                return redirect(url_for("site.users"))
            return None
        if endpoint in MFA_ENROLMENT_ENDPOINTS or endpoint.startswith("site.mfa_"):
            return None
        if endpoint == "static" or not current_user.is_authenticated:
            return None
        if mfa_enrolment_state()[0] != "required":
            return None
        return full_page_redirect(url_for("site.account_security"))

    @app.context_processor
    def _user():
        return {
            "site_endpoints": app.view_functions,
            "can": (lambda p: current_user.is_authenticated and current_user.can(p)),
            "Permission": Permission,
            "mfa_enrolment": mfa_enrolment_state()
            if current_user.is_authenticated
            else ("none", None),
        }
