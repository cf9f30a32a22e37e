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


STAFF_ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "platform_admin": frozenset(Permission),
    "support": frozenset(
        {Permission.TENANT_VIEW, Permission.AUDIT_VIEW, Permission.STAFF_VIEW, Permission.JOBS_VIEW}
    ),
    "compliance": frozenset(
        {Permission.TENANT_VIEW, Permission.AUDIT_VIEW, Permission.AUDIT_VERIFY}
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
