"""The one permission registry: permissions, the roles that hold them, and the checking decorator."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from functools import wraps

from flask import abort
from flask_login import current_user


class Permission(StrEnum):
    """Named scope:resource:action."""

    TENANT_VIEW = "tenancy:tenant:view"
    TENANT_CREATE = "tenancy:tenant:create"
    TENANT_UPDATE = "tenancy:tenant:update"
    TENANT_SUSPEND = "tenancy:tenant:suspend"
    TENANT_DELETE = "tenancy:tenant:delete"
    AUDIT_VIEW = "compliance:audit:view"
    AUDIT_VERIFY = "compliance:audit:verify"
    STAFF_VIEW = "console:staff:view"
    STAFF_MANAGE = "console:staff:manage"
    JOBS_VIEW = "ops:job:view"
    JOBS_MANAGE = "ops:job:manage"
    OUTBOX_VIEW = "ops:outbox:view"
    # Within a tenant (held by tenant roles; staff hold them when opening a tenant's users).
    USERS_VIEW = "accounts:user:view"
    USERS_MANAGE = "accounts:user:manage"
    SESSIONS_REVOKE = "auth:session:revoke"
    MFA_RESET = "auth:mfa:reset"
    ROLES_VIEW = "accounts:role:view"
    ROLES_MANAGE = "accounts:role:manage"
    SECURITY_MANAGE = "auth:settings:manage"
    CONSENT_VIEW = "compliance:consent:view"
    CONSENT_MANAGE = "compliance:consent:manage"


# What each permission lets a person do, as shown on the tenant's Roles page.
TENANT_PERMISSIONS: dict[Permission, str] = {
    Permission.USERS_VIEW: "See users, their roles, sessions, devices and sign-in history",
    Permission.USERS_MANAGE: "Invite, edit, suspend, delete and restore users; assign roles",
    Permission.SESSIONS_REVOKE: "Sign users out by revoking their sessions",
    Permission.MFA_RESET: "Reset a user's two-factor authentication",
    Permission.ROLES_VIEW: "See roles and their permissions",
    Permission.ROLES_MANAGE: "Create, change and delete tenant-defined roles",
    Permission.SECURITY_MANAGE: "Change security settings: MFA policy, session timeouts, passwords",
    Permission.AUDIT_VIEW: "Read and export the organisation's audit trail",
    Permission.AUDIT_VERIFY: "Verify the audit trail's hash chain",
    Permission.CONSENT_VIEW: "See consent purposes, their rates and any user's consent history",
    Permission.CONSENT_MANAGE: "Define, reword and archive consent purposes",
}

STAFF_ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "platform_admin": frozenset(Permission),
    "support": frozenset(
        {
            Permission.TENANT_VIEW,
            Permission.AUDIT_VIEW,
            Permission.STAFF_VIEW,
            Permission.JOBS_VIEW,
            Permission.USERS_VIEW,
            Permission.ROLES_VIEW,
        }
    ),
    "compliance": frozenset(
        {
            Permission.TENANT_VIEW,
            Permission.AUDIT_VIEW,
            Permission.AUDIT_VERIFY,
            Permission.CONSENT_VIEW,
        }
    ),
}


class BuiltinRole(StrEnum):
    TENANT_ADMIN = "tenant_admin"
    COMPLIANCE_OFFICER = "compliance_officer"
    MEMBER = "member"


# Built-in tenant roles live in code, so a permission added later reaches them without a
# data migration. Tenant-defined roles are rows holding a subset of TENANT_PERMISSIONS.
BUILTIN_ROLES: dict[str, tuple[str, str, frozenset[Permission]]] = {
    BuiltinRole.TENANT_ADMIN: (
        "Tenant admin",
        "Manages the organisation's users, roles, sessions and security settings.",
        frozenset(TENANT_PERMISSIONS),
    ),
    BuiltinRole.COMPLIANCE_OFFICER: (
        "Compliance officer",
        "Reads users and the audit trail; handles data-protection requests.",
        frozenset(
            {
                Permission.USERS_VIEW,
                Permission.ROLES_VIEW,
                Permission.AUDIT_VIEW,
                Permission.AUDIT_VERIFY,
                Permission.CONSENT_VIEW,
            }
        ),
    ),
    BuiltinRole.MEMBER: (
        "Member",
        "Signs in and manages their own account.",
        frozenset(),
    ),
}


def requires(permission: Permission) -> Callable:
    """Signed out: the login manager's response. Signed in without the permission: 403."""

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            if not current_user.is_authenticated:
                from flask import current_app

                return current_app.login_manager.unauthorized()
            if not current_user.can(permission):
                abort(403)
            return view(*args, **kwargs)

        wrapped.permission = permission
        return wrapped

    return decorator
