"""The platform audit trail in the console: filtered pages, CSV export, chain verification."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import partial

from flask import abort, flash, request, url_for
from sqlalchemy import and_, or_, select, true

from portal.compliance import audit_csv
from portal.compliance.audit import verify_chain
from portal.compliance.models import PlatformAuditEntry
from portal.console.auth import current_actor
from portal.console.blueprint import bp
from portal.console.common import (
    PAGE_SIZE,
    visible,
    visible_tenant_ids,
)
from portal.db import db
from portal.forms import ActionForm
from portal.pagination import Filter, ListQuery, ListSpec, date_filter
from portal.permissions import Permission, requires
from portal.staff.scope import visible_audit_filter
from portal.web import (
    render_page,
    request_session,
    see_other,
    wants_fragment,
)

AUDIT = ListSpec(
    filters=(
        Filter("action", lambda raw: raw[:64]),  # a prefix: "tenancy:" or a whole action
        Filter("actor", lambda raw: raw[:320]),  # label contains, or the exact id
        date_filter("from"),
        date_filter("to"),
    ),
    sorts={"seq": ("seq",)},
    default_sort="-seq",
    size=PAGE_SIZE,
    counted=False,  # the platform trail only grows: no COUNT on every page
)


def audit_query(values) -> tuple[ListQuery, list]:
    """The normalised query of the audit page's query string (or `values`: the export's form
    fields) and its SQL conditions, within the tenants the member may see."""
    model = PlatformAuditEntry
    query = AUDIT.parse(values)
    f = query.filters
    conditions = []
    if f["action"]:
        conditions.append(model.action.startswith(f["action"], autoescape=True))
    if f["actor"]:
        conditions.append(
            or_(
                model.actor_label.icontains(f["actor"], autoescape=True),
                model.actor_id == f["actor"],
            )
        )
    if f["from"]:
        conditions.append(model.occurred_at >= datetime.combine(f["from"], time.min, UTC))
    if f["to"] and f["to"] < date.max:  # the day after 9999-12-31 does not exist
        conditions.append(
            model.occurred_at < datetime.combine(f["to"] + timedelta(days=1), time.min, UTC)
        )
    only_visible = visible_audit_filter(visible_tenant_ids())
    if only_visible is not None:
        conditions.append(only_visible)
    return query, conditions


@bp.get("/audit")
@requires(Permission.AUDIT_VIEW)
def audit():
    session = request_session()
    model = PlatformAuditEntry
    query, conditions = audit_query(request.args)
    entries = AUDIT.page(
        session,
        select(model).where(and_(true(), *conditions)).subquery("entries"),
        query,
        url=partial(url_for, "console.audit"),
        size=PAGE_SIZE,
    )
    actions = session.scalars(
        visible(select(model.action), visible_audit_filter(visible_tenant_ids()))
        .distinct()
        .order_by(model.action)
    ).all()
    return render_page(
        "console/audit.html",
        "results",
        entries=entries,
        actions=actions,
        export_form=ActionForm(formdata=None),
        verify_form=ActionForm(formdata=None),
        result=None,
    )


@bp.post("/audit.csv")
@requires(Permission.AUDIT_VIEW)
def audit_export():
    """The filtered trail as CSV, streamed in chunks from its own transaction. A POST with the
    CSRF token (the filters as form fields), as the export writes an audit entry: a link on
    another site cannot make a signed-in browser do it."""
    query, conditions = audit_query(request.form)
    return audit_csv.export(
        request_session(),
        PlatformAuditEntry,
        conditions,
        actor=current_actor(),
        filters=query.args(),
        scope=db.platform_scope,
        filename=f"platform-audit-{audit_csv.stamp()}.csv",
    )


@bp.post("/audit/verify")
@requires(Permission.AUDIT_VERIFY)
def audit_verify():
    if not ActionForm().validate_on_submit():
        abort(400)
    result = verify_chain(request_session())
    if wants_fragment():
        return render_page(
            "console/audit.html", "verify", result=result, verify_form=ActionForm(formdata=None)
        )
    flash(result.message("platform"), "success" if result.ok else "danger")
    return see_other(url_for("console.audit"))
