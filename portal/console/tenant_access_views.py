"""Console: open a tenant's site as MSP staff (one-time hand-off, audited in both trails)."""

from __future__ import annotations

from flask import abort, request
from flask_login import current_user

from portal.auth import staff_access
from portal.console.auth import current_actor
from portal.console.blueprint import bp
from portal.console.common import access_tenant, settings
from portal.forms import ActionForm
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
    token = staff_access.hand_off(
        request_session(),
        queues.redis,
        tenant,
        staff=current_user.staff,
        console_session_id=current_user.session_id,
        mfa=current_user.used_mfa,
        actor=current_actor(),
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
