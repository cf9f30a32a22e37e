"""Console: open a tenant's site as MSP staff (one-time hand-off, audited in both trails)."""

from __future__ import annotations

from flask import abort, request
from flask_login import current_user

from portal.auth import staff_access
from portal.compliance.audit import AuditAction, record
from portal.console.auth import current_actor
from portal.console.forms import ActionForm
from portal.console.views import access_tenant, bp, settings
from portal.permissions import Permission, requires
from portal.queue import queues
from portal.web import render_page, request_session


@bp.post("/tenants/<slug>/open")
@requires(Permission.USERS_VIEW)
def tenant_open(slug):
    """Hand the browser over to the tenant's site with the staff role's tenant permissions."""
    tenant = access_tenant(slug)
    if not ActionForm().validate_on_submit():
        abort(400)
    staff = current_user.staff
    token = staff_access.grant(
        queues.redis,
        staff_id=staff.id,
        email=staff.email,
        name=staff.name,
        role=staff.role,
        tenant_slug=tenant.slug,
        console_session_id=current_user.session_id,
    )
    record(
        request_session(),
        AuditAction.STAFF_TENANT_ACCESS,
        actor=current_actor(),
        target=("tenant", tenant.id),
        detail={"role": staff.role, "mfa": current_user.used_mfa},
    )
    port = f":{request.host.rsplit(':', 1)[1]}" if ":" in request.host else ""
    host = f"{tenant.slug}.{settings().base_domain}{port}"
    # A page that moves on by itself rather than a redirect: the console's CSP allows forms to
    # submit only to itself (form-action 'self'), and that covers redirects after a POST.
    response = render_page(
        "console/tenant_open.html",
        t=tenant,
        target=f"{request.scheme}://{host}/staff-access/{token}",
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
