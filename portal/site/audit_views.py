"""The tenant's audit trail on its own site: a filtered, keyset-paged list, a CSV export and a
check of the hash chain. Routes attach to the site blueprint.

Everything reads the request's tenant-scoped session, so only this tenant's trail is reachable.
- Filters live in the URL (bookmarkable, the back button works); input that makes no sense (a
  bad date, an unknown user, a tampered cursor) narrows nothing or matches nothing, never errs.
- The export is a CSRF-checked POST, since it writes to the trail. It is recorded in the
  request's transaction, which commits before the body streams; the rows then stream from a
  transaction of their own with a server-side cursor, so memory stays flat however long the
  trail is.
- Verifying only reads: it walks the whole chain and reports the first entry that does not fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from flask import Response, abort, request, url_for
from flask_login import current_user
from sqlalchemy import ColumnElement, and_, false, func, select, true

from portal.accounts import lifecycle
from portal.accounts.forms import ActionForm
from portal.accounts.models import User
from portal.compliance import audit_csv
from portal.compliance.audit import AuditAction, VerifyResult, record, verify_chain
from portal.compliance.models import TenantAuditEntry
from portal.db import db
from portal.pagination import keyset_page
from portal.permissions import Permission, requires
from portal.site.auth import current_actor
from portal.site.blueprint import bp
from portal.web import current_tenant, render_page, request_session, wants_fragment

PAGE_SIZE = 50
MAX_ID = 2**31 - 1  # user ids are PostgreSQL integers
ACTOR_TYPES = {"user": "Users", "staff": "MSP staff", "system": "System", "anonymous": "Anonymous"}


@dataclass
class AuditFilters:
    """The page's query, normalised, with the SQL conditions it stands for."""

    action: str = ""
    actor: str = ""
    actor_type: str = ""
    target: str = ""  # a user's email, as typed
    user: int | None = None  # the target user's id (from `target`, or `user=` in a link)
    user_email: str | None = None  # that user's email, to show
    linked: bool = False  # the user came as `user=<id>`
    date_from: date | None = None
    date_to: date | None = None
    ignored: list[str] = field(default_factory=list)  # what was given but made no sense
    conditions: list[ColumnElement] = field(default_factory=list)

    def args(self) -> dict[str, str]:
        """The URL query of these filters, empty ones left out."""
        values = {
            "action": self.action,
            "actor": self.actor,
            "by": self.actor_type,
            "target": self.target,
            "user": str(self.user) if self.linked else "",
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
        }
        return {k: v for k, v in values.items() if v}


def _text(values, name: str, limit: int) -> str:
    return " ".join(values.get(name, "").split())[:limit]


def _date(values, name: str, label: str, ignored: list[str]) -> date | None:
    raw = values.get(name, "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw[:32])
    except ValueError:
        ignored.append(f"{label} is not a date (use YYYY-MM-DD)")
        return None


def audit_filters(values=None) -> AuditFilters:
    """Filters from the query string (or `values`: the export's form fields), with junk dropped
    and noted."""
    values = request.args if values is None else values
    model = TenantAuditEntry
    f = AuditFilters(
        action=_text(values, "action", 64),
        actor=_text(values, "actor", 320),
        actor_type=values.get("by", "") if values.get("by") in ACTOR_TYPES else "",
        target=_text(values, "target", 320),
    )
    f.date_from = _date(values, "from", "From", f.ignored)
    f.date_to = _date(values, "to", "To", f.ignored)
    if f.action:
        f.conditions.append(model.action.startswith(f.action, autoescape=True))
    if f.actor:
        f.conditions.append(model.actor_label.icontains(f.actor, autoescape=True))
    if f.actor_type:
        f.conditions.append(model.actor_type == f.actor_type)
    session = request_session()
    raw = values.get("user", "").strip()
    linked = None
    if raw.isascii() and raw.isdigit() and len(raw) <= 10 and 0 < int(raw) <= MAX_ID:
        linked = int(raw)
    elif raw:
        f.ignored.append("The user in the link is not a user id")
    linked_email = session.scalar(select(User.email).where(User.id == linked)) if linked else None
    if f.target and not (linked_email and linked_email.lower() == f.target.lower()):
        found = lifecycle.find_user(session, f.target)
        if found is None:
            f.ignored.append(f"No user has the email address {f.target}")
            f.conditions.append(false())
        else:
            f.user, f.user_email = found.id, found.email
    elif linked:
        # `user=<id>` (from a link, or kept in the form): exact even when emails repeat.
        f.user, f.user_email, f.linked, f.target = linked, linked_email, True, ""
    if f.user is not None:
        f.conditions.append((model.target_type == "user") & (model.target_id == str(f.user)))
    if f.date_from:
        f.conditions.append(model.occurred_at >= datetime.combine(f.date_from, time.min, UTC))
    if f.date_to and f.date_to < date.max:
        f.conditions.append(
            model.occurred_at < datetime.combine(f.date_to + timedelta(days=1), time.min, UTC)
        )
    return f


def _cursor(name: str) -> str | None:
    """A page cursor from the URL (keyset_page ignores tampered ones: first page)."""
    return request.args.get(name, "")[:200] or None


def _page_url(f: AuditFilters, **cursor: str | None) -> str:
    return url_for("site.audit", **f.args(), **{k: v for k, v in cursor.items() if v})


def render_audit(*, result: VerifyResult | None = None, status: int = 200) -> Response:
    """The audit page for the current query: filters, one keyset page, the row count."""
    session = request_session()
    model = TenantAuditEntry
    f = audit_filters()
    after, before = _cursor("after"), _cursor("before")
    query = select(model).where(and_(true(), *f.conditions))
    page = keyset_page(
        session,
        query,
        [model.seq],
        descending=True,
        after=after,
        before=before,
        size=PAGE_SIZE,
        entity=True,
    )
    if not after and not before and page.next_cursor is None:
        total = len(page.rows)  # everything matching fits on the first page
    else:
        total = session.scalar(
            select(func.count()).select_from(model).where(and_(true(), *f.conditions))
        )
    target_ids = {
        int(e.target_id)
        for e in page.rows
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
    here = _page_url(f, after=after, before=before)
    response = render_page(
        "site/audit.html",
        "results",
        status=status,
        rows=page.rows,
        total=total,
        emails=emails,
        f=f,
        actions=actions,
        sources=sources,
        actor_types=ACTOR_TYPES,
        next_url=_page_url(f, after=page.next_cursor) if page.next_cursor else None,
        prev_url=_page_url(f, before=page.prev_cursor) if page.prev_cursor else None,
        export_form=ActionForm(formdata=None),
        users_url=url_for("site.users") if current_user.can(Permission.USERS_VIEW) else None,
        verify_form=ActionForm(formdata=None),
        result=result,
    )
    if request.method == "GET" and wants_fragment():
        # The address bar shows the normalised query, not every empty field of the form.
        response.headers["HX-Push-Url"] = here
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
    f = audit_filters(request.form)
    record(request_session(), AuditAction.AUDIT_EXPORT, actor=current_actor(), detail=f.args())
    query = (
        select(TenantAuditEntry).where(and_(true(), *f.conditions)).order_by(TenantAuditEntry.seq)
    )
    return audit_csv.response(
        query,
        lambda: db.tenant_scope(tenant),
        f"audit-{tenant.slug}-{datetime.now(UTC).date().isoformat()}.csv",
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
