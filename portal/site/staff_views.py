"""The tenant-site end of a staff hand-off: take the one-time grant and start the visit."""

from __future__ import annotations

from flask import session
from flask_login import login_user

from portal.accounts.settings import mfa_enforced_for
from portal.auth import staff_access
from portal.compliance.audit import AuditAction, record
from portal.errors import render_error
from portal.queue import queues
from portal.site.auth import StaffVisitor, tenant_settings
from portal.site.blueprint import bp
from portal.web import actor_for, current_tenant, request_session, see_other


@bp.get("/staff-access/<token>")
def staff_access_start(token):
    """Start the visit, re-checked in the database first; where the tenant's MFA policy applies
    to the visit's permissions, only a console session that used a second factor may enter."""
    tenant = current_tenant()
    db = request_session()
    granted = staff_access.take_grant(queues.redis, token, tenant.slug)
    visit = staff_access.recheck(db, granted, tenant.id) if granted else None
    if visit is None:
        return render_error(
            410,
            "This link has expired",
            "Staff links work once, for a minute. Open the tenant again from the MSP console.",
        )
    actor = actor_for("staff", visit.staff_id, visit.email)
    if not visit.mfa and mfa_enforced_for(tenant_settings(), visit.permissions):
        record(
            db,
            AuditAction.STAFF_TENANT_ACCESS,
            actor=actor,
            target=("tenant", tenant.slug),
            detail={"role": visit.role, "mfa": False, "refused": "mfa_required"},
        )
        db.commit()  # keep the refusal in the trail; a 4xx rolls the request back
        return render_error(
            403,
            f"{tenant.name} requires two-factor authentication",
            f"{tenant.name} requires two-factor authentication for what your role can do here. "
            "Sign out of the MSP console, sign in again with your authenticator app, and open "
            "the tenant again.",
        )
    visit_token = staff_access.start_visit(queues.redis, visit)
    record(
        db,
        AuditAction.STAFF_TENANT_ACCESS,
        actor=actor,
        target=("tenant", tenant.slug),
        detail={
            "role": visit.role,
            "permissions": sorted(visit.permissions),
            "mfa": visit.mfa,
        },
    )
    session.clear()
    login_user(StaffVisitor(visit_token, visit))
    return see_other("/users")  # the banner says whose site this is
