"""The tenant-site end of a staff hand-off: take the one-time grant and start the visit."""

from __future__ import annotations

from flask import session
from flask_login import login_user

from portal.auth import staff_access
from portal.compliance.audit import AuditAction, record
from portal.errors import render_error
from portal.queue import queues
from portal.site.auth import StaffVisitor
from portal.site.views import bp
from portal.web import actor_for, current_tenant, request_session, see_other


@bp.get("/staff-access/<token>")
def staff_access_start(token):
    tenant = current_tenant()
    started = staff_access.redeem(queues.redis, token, tenant.slug)
    if started is None:
        return render_error(
            410,
            "This link has expired",
            "Staff links work once, for a minute. Open the tenant again from the MSP console.",
        )
    visit_token, visit = started
    record(
        request_session(),
        AuditAction.STAFF_TENANT_ACCESS,
        actor=actor_for("staff", visit.staff_id, visit.email),
        target=("tenant", tenant.slug),
        detail={"role": visit.role, "permissions": sorted(visit.permissions)},
    )
    session.clear()
    login_user(StaffVisitor(visit_token, visit))
    return see_other("/users")  # the banner says whose site this is
