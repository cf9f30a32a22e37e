"""The tenant's audit trail on its own site: a filtered, keyset-paged list, a CSV export and a
check of the hash chain. Routes attach to the site blueprint.

Everything reads the request's tenant-scoped session, so only this tenant's trail is reachable.
- Filters live in the URL (bookmarkable, the back button works); input that makes no sense (a
  bad date, an unknown user, a tampered cursor) narrows nothing or matches nothing, never errs.
- The export is a CSRF-checked POST, since it writes to the trail (`audit_csv.export` records
  it and streams the rows from a transaction of its own).
- Verifying only reads: it walks the whole chain and reports the first entry that does not fit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import partial

from flask import Response, abort, request, url_for
from flask_login import current_user
from sqlalchemy import ColumnElement, and_, false, select, true

from portal.accounts import lifecycle
from portal.accounts.models import User
from portal.compliance import audit_csv
from portal.compliance.audit import VerifyResult, verify_chain
from portal.compliance.models import TenantAuditEntry
from portal.db import db
from portal.forms import ActionForm
from portal.pagination import (
    Filter,
    Ignored,
    ListQuery,
    ListSpec,
    choice_filter,
    date_filter,
    text_filter,
)
from portal.permissions import Permission, requires
from portal.site.admin_common import MAX_ID
from portal.site.auth import current_actor
from portal.site.blueprint import bp
from portal.web import current_tenant, render_page, request_session, wants_fragment

PAGE_SIZE = 50
ACTOR_TYPES = {"user": "Users", "staff": "MSP staff", "system": "System", "anonymous": "Anonymous"}


def _user_id(raw: str) -> int | None:
    if not raw:
        return None
    if raw.isascii() and raw.isdigit() and len(raw) <= 10 and 0 < int(raw) <= MAX_ID:
        return int(raw)
    raise Ignored("The user in the link is not a user id")


AUDIT = ListSpec(
    filters=(
        text_filter("action", 64),
        text_filter("actor", 320),
        choice_filter("by", ACTOR_TYPES),  # the actor type
        text_filter("target", 320),  # a user's email, as typed
        Filter("user", _user_id, None),  # the target user's id, from a link
        date_filter("from", "From is not a date (use YYYY-MM-DD)"),
        date_filter("to", "To is not a date (use YYYY-MM-DD)"),
    ),
    sorts={"seq": ("seq",)},
    default_sort="-seq",
    size=PAGE_SIZE,
)


@dataclass(frozen=True)
class AboutUser:
    """The user the entries are about: typed as `target`, or linked as `user=<id>`."""

    id: int
    email: str | None
    linked: bool  # came as `user=<id>`: exact even when emails repeat; kept in the URL


def audit_query(values) -> tuple[ListQuery, list[ColumnElement], AboutUser | None]:
    """The normalised query of the page's query string (or `values`: the export's form fields),
    the SQL conditions it stands for, and the user it is about. Input that makes no sense
    narrows nothing (a bad date) or matches nothing (an unknown email), and is noted."""
    model = TenantAuditEntry
    query = AUDIT.parse(values)
    f = query.filters
    ignored = list(query.ignored)
    conditions: list[ColumnElement] = []
    if f["action"]:
        conditions.append(model.action.startswith(f["action"], autoescape=True))
    if f["actor"]:
        conditions.append(model.actor_label.icontains(f["actor"], autoescape=True))
    if f["by"]:
        conditions.append(model.actor_type == f["by"])
    session = request_session()
    linked = f["user"]
    linked_email = session.scalar(select(User.email).where(User.id == linked)) if linked else None
    about = None
    if f["target"] and not (linked_email and linked_email.lower() == f["target"].lower()):
        query = query.with_filters(user=None)
        found = lifecycle.find_user(session, f["target"])
        if found is None:
            ignored.append(f"No user has the email address {f['target']}")
            conditions.append(false())
        else:
            about = AboutUser(found.id, found.email, linked=False)
    elif linked:
        about = AboutUser(linked, linked_email, linked=True)
        query = query.with_filters(target="")
    if about is not None:
        conditions.append((model.target_type == "user") & (model.target_id == str(about.id)))
    if f["from"]:
        conditions.append(model.occurred_at >= datetime.combine(f["from"], time.min, UTC))
    if f["to"] and f["to"] < date.max:
        conditions.append(
            model.occurred_at < datetime.combine(f["to"] + timedelta(days=1), time.min, UTC)
        )
    return replace(query, ignored=tuple(ignored)), conditions, about


def render_audit(*, result: VerifyResult | None = None, status: int = 200) -> Response:
    """The audit page for the current query: filters, one keyset page, the row count."""
    session = request_session()
    model = TenantAuditEntry
    query, conditions, about = audit_query(request.args)
    listed = select(model).where(and_(true(), *conditions)).subquery("entries")
    entries = AUDIT.page(session, listed, query, url=partial(url_for, "site.audit"), size=PAGE_SIZE)
    target_ids = {
        int(e.target_id)
        for e in entries.rows
        if e.target_type == "user"
        and (e.target_id or "").isascii()
        and (e.target_id or "").isdigit()
        and int(e.target_id) <= MAX_ID
    }
    emails = (
        dict(session.execute(select(User.id, User.email).where(User.id.in_(target_ids))).all())
        if target_ids
        else {}
    )
    actions = session.scalars(select(model.action).distinct().order_by(model.action)).all()
    sources = sorted({a.split(":", 1)[0] for a in actions if ":" in a})
    response = render_page(
        "site/audit.html",
        "results",
        status=status,
        entries=entries,
        f=entries.filters,
        about=about,
        emails=emails,
        actions=actions,
        sources=sources,
        actor_types=ACTOR_TYPES,
        export_form=ActionForm(formdata=None),
        users_url=url_for("site.users") if current_user.can(Permission.USERS_VIEW) else None,
        verify_form=ActionForm(formdata=None),
        result=result,
    )
    if request.method == "GET" and wants_fragment():
        # The address bar shows the normalised query, not every empty field of the form.
        response.headers["HX-Push-Url"] = entries.here
    return response


@bp.get("/audit")
@requires(Permission.AUDIT_VIEW)
def audit():
    return render_audit()


@bp.post("/audit.csv")
@requires(Permission.AUDIT_VIEW)
def audit_export():
    """The filtered trail as CSV, oldest first, streamed from its own transaction. A POST with
    the CSRF token (the filters as form fields; GET answers 405), as the export writes an audit
    entry: a link on another site cannot make a signed-in browser do it."""
    tenant = current_tenant()
    query, conditions, _about = audit_query(request.form)
    return audit_csv.export(
        request_session(),
        TenantAuditEntry,
        conditions,
        actor=current_actor(),
        filters=query.args(),
        scope=lambda: db.tenant_scope(tenant),
        filename=f"audit-{tenant.slug}-{datetime.now(UTC).date().isoformat()}.csv",
    )


@bp.post("/audit/verify")
@requires(Permission.AUDIT_VERIFY)
def audit_verify():
    if not ActionForm().validate_on_submit():
        abort(400)
    result = verify_chain(request_session())
    if wants_fragment():
        return render_page(
            "site/audit.html", "verify", result=result, verify_form=ActionForm(formdata=None)
        )
    # Without JavaScript: the page itself, with the result where the button is.
    return render_audit(result=result)
