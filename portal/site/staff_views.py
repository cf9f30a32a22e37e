"""The tenant-site end of a staff hand-off: take the one-time grant and start the visit."""

from __future__ import annotations

from flask import session as cookie
from flask_login import login_user

from portal.auth import staff_access
from portal.errors import render_error
from portal.queue import queues
from portal.site.auth import StaffVisitor
from portal.site.blueprint import bp
from portal.web import actor_for, current_tenant, request_session, see_other


@bp.get("/staff-access/<token>")
def staff_access_start(token):
    """Start the visit, re-checked in the database first; where the tenant's MFA policy applies
    to the visit's permissions, only a console session that used a second factor may enter."""
    tenant = current_tenant()
    session = request_session()
    granted = staff_access.take_grant(queues.redis, token, tenant.slug)
    visit = staff_access.recheck(session, granted, tenant.id) if granted else None
    if visit is None:
        return render_error(
            410,
            "This link has expired",
            "Staff links work once, for a minute. Open the tenant again from the MSP console.",
        )
    actor = actor_for("staff", visit.staff_id, visit.email)
    visit_token = staff_access.admit_visit(session, queues.redis, visit, actor=actor)
    if visit_token is None:
        return render_error(
            403,
            f"{tenant.name} requires two-factor authentication",
            f"{tenant.name} requires two-factor authentication for what your role can do here. "
            "Sign out of the MSP console, sign in again with your authenticator app, and open "
            "the tenant again.",
        )
    cookie.clear()
    login_user(StaffVisitor(visit_token, visit))
    return see_other("/users")  # the banner says whose site this is
