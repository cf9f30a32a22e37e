"""The MSP staff console: sign-in, overview, tenants, audit."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta

from flask import Blueprint, abort, current_app, flash, g, redirect, request, url_for
from flask import session as cookie
from flask_login import current_user, login_user, logout_user
from sqlalchemy import and_, func, or_, select, true
from sqlalchemy.dialects.postgresql import aggregate_order_by

from portal.auth.throttle import SignInThrottle
from portal.compliance import audit_csv
from portal.compliance.audit import AuditAction, record, verify_chain
from portal.compliance.models import PlatformAuditEntry
from portal.console import second_step
from portal.console import services as staff_services
from portal.console.auth import SignedInStaff, current_actor
from portal.console.forms import (
    ActionForm,
    DeleteForm,
    DomainForm,
    LimitsForm,
    RemoveDomainForm,
    RenameForm,
    SignInForm,
    SuspendForm,
    TenantCreateForm,
)
from portal.db import db
from portal.pagination import keyset_page
from portal.permissions import Permission, requires
from portal.queue import queues
from portal.tenancy import services, usage
from portal.tenancy.migrations import head_revision
from portal.tenancy.models import Tenant, TenantDomain, TenantStatus
from portal.web import (
    actor_for,
    local_path,
    render_page,
    request_session,
    see_other,
    wants_fragment,
)

bp = Blueprint("console", __name__)
PAGE_SIZE = 25


def settings():
    return current_app.config["PORTAL"]


def tenant_scope() -> frozenset[int] | None:
    """Ids of the tenants the signed-in member may see (None: every tenant), read once per
    request. Every read of tenants, or of audit entries about them, goes through this."""
    if "tenant_scope" not in g:
        g.tenant_scope = staff_services.visible_tenant_ids(request_session(), current_user.staff)
    return g.tenant_scope


def visible(query, where):
    """`query` restricted by `where`, a scope filter that is None when nothing is hidden."""
    return query if where is None else query.where(where)


def safe_next(target: str | None) -> str:
    return local_path(target, url_for("console.overview"))


# ---- sign-in ------------------------------------------------------------------------------


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    if current_user.is_authenticated:
        return redirect(url_for("console.overview"))
    form = SignInForm()
    error = None
    if form.validate_on_submit():
        session = request_session()
        member = staff_services.authenticate_staff(
            session,
            form.email.data,
            form.password.data,
            actor=current_actor(),
            throttle=SignInThrottle(queues.redis, "staff"),
        )
        if member is None:
            error = "Email or password is not right."
            session.commit()  # keep the failed-attempt audit entry
        elif member.mfa_enabled:
            # The second step (portal/console/account_views.py) completes the sign-in.
            second_step.begin(member, safe_next(request.args.get("next")))
            return see_other(url_for("console.sign_in_verify"))
        else:
            cookie.clear()  # nothing from before sign-in survives it
            token, row = staff_services.start_staff_session(
                session,
                member,
                actor=actor_for("staff", member.id, member.email),
                user_agent=request.user_agent.string,
            )
            login_user(SignedInStaff(token, row.id, member))
            return see_other(safe_next(request.args.get("next")))
    status = 422 if request.method == "POST" else 200
    return render_page("console/sign_in.html", form=form, error=error, status=status)


@bp.post("/sign-out")
def sign_out():
    if current_user.is_authenticated:
        staff_services.end_staff_session(
            request_session(), current_user.token, actor=current_actor()
        )
        logout_user()
    cookie.clear()
    return see_other(url_for("console.sign_in"))


# ---- overview -----------------------------------------------------------------------------


@bp.get("/")
@requires(Permission.TENANT_VIEW)
def overview():
    session = request_session()
    scope = tenant_scope()
    only_visible = staff_services.visible_tenant_filter(scope)
    head = head_revision()
    behind = session.scalars(
        visible(select(Tenant), only_visible)
        .where(
            or_(Tenant.schema_revision.is_distinct_from(head), Tenant.migration_error.is_not(None))
        )
        .where(Tenant.status != TenantStatus.DELETED)
        .order_by(Tenant.slug)
        .limit(10)
    ).all()
    recent = session.scalars(
        visible(select(Tenant), only_visible).order_by(Tenant.created_at.desc()).limit(5)
    ).all()
    entries = session.scalars(
        visible(select(PlatformAuditEntry), staff_services.visible_audit_filter(scope))
        .order_by(PlatformAuditEntry.seq.desc())
        .limit(8)
    ).all()
    return render_page(
        "console/overview.html",
        counts=count_by_status(session, only_visible),
        behind=behind,
        head=head,
        recent=recent,
        entries=entries,
        near_quota=near_quota(session, only_visible),
    )


def count_by_status(session, only_visible) -> dict[str, int]:
    if only_visible is None:
        return services.count_by_status(session)
    rows = session.execute(
        select(Tenant.status, func.count()).where(only_visible).group_by(Tenant.status)
    )
    return {status.value: 0 for status in TenantStatus} | dict(rows.all())


def near_quota(session, only_visible, limit: int = 10) -> list[tuple[Tenant, int]]:
    """`usage.tenants_near_quota`, counting users only in the tenants the member may see."""
    if only_visible is None:
        return usage.tenants_near_quota(session, limit)
    limited = session.scalars(
        select(Tenant).where(
            only_visible, Tenant.status == TenantStatus.ACTIVE, Tenant.max_users.is_not(None)
        )
    ).all()
    counts = usage.user_counts(session, [t.slug for t in limited])
    near = [
        (t, counts.get(t.slug, 0))
        for t in limited
        if counts.get(t.slug, 0) >= usage.NEAR_QUOTA * t.max_users
    ]
    near.sort(key=lambda pair: pair[1] / max(pair[0].max_users, 1), reverse=True)
    return near[:limit]


# ---- tenants ------------------------------------------------------------------------------


# The list is one statement: the filtered tenants as a CTE, the page of them with each one's
# domains aggregated, and the total count as a column. Plain rows, no ORM identity map.
TENANT_LIST_COLUMNS = (
    Tenant.id,
    Tenant.slug,
    Tenant.name,
    Tenant.status,
    Tenant.max_users,
    Tenant.schema_revision,
    Tenant.migration_error,
    Tenant.created_at,
)
TENANT_SORTS = {
    "slug": ["slug"],
    "name": ["name", "slug"],
    "created": ["created_at", "slug"],
    "status": ["status", "slug"],
}


def tenant_query(q: str, status: str, only_visible=None):
    query = visible(select(*TENANT_LIST_COLUMNS), only_visible)
    if q:
        like = f"%{q.lower().replace('%', '').replace('_', '')}%"
        domain_match = select(TenantDomain.tenant_id).where(TenantDomain.domain.ilike(like))
        query = query.where(
            or_(Tenant.slug.ilike(like), Tenant.name.ilike(like), Tenant.id.in_(domain_match))
        )
    if status in set(TenantStatus):
        query = query.where(Tenant.status == status)
    return query


@bp.get("/tenants")
@requires(Permission.TENANT_VIEW)
def tenants():
    session = request_session()
    q = request.args.get("q", "").strip()[:100]
    status = request.args.get("status", "")
    sort = request.args.get("sort", "slug")
    descending = sort.startswith("-")
    if sort.lstrip("-") not in TENANT_SORTS:
        sort, descending = "slug", False
    only_visible = staff_services.visible_tenant_filter(tenant_scope())
    filtered = tenant_query(q, status, only_visible).cte("filtered")
    domains = (
        select(func.array_agg(aggregate_order_by(TenantDomain.domain, TenantDomain.domain)))
        .where(TenantDomain.tenant_id == filtered.c.id)
        .scalar_subquery()
        .label("domains")
    )
    total = select(func.count()).select_from(filtered).scalar_subquery().label("total")
    page = keyset_page(
        session,
        select(filtered, domains, total),
        [filtered.c[name] for name in TENANT_SORTS[sort.lstrip("-")]],
        descending=descending,
        after=request.args.get("after"),
        before=request.args.get("before"),
        size=PAGE_SIZE,
    )
    if page.rows:
        count = page.rows[0].total
    else:  # a cursor past the end: count separately
        count = session.scalar(select(func.count()).select_from(filtered))
    filters = {"q": q or None, "status": status or None, "sort": sort if sort != "slug" else None}
    return render_page(
        "console/tenants.html",
        "results",
        rows=page.rows,
        total=count,
        q=q,
        status_filter=status,
        sort=sort,
        filters=filters,
        statuses=list(TenantStatus),
        next_url=url_for("console.tenants", **filters, after=page.next_cursor)
        if page.next_cursor
        else None,
        prev_url=url_for("console.tenants", **filters, before=page.prev_cursor)
        if page.prev_cursor
        else None,
        head=head_revision(),
    )


def _parse_domains(raw: str | None) -> list[str]:
    return [line.strip() for line in (raw or "").replace(",", "\n").splitlines() if line.strip()]


@bp.route("/tenants/new", methods=["GET", "POST"])
@requires(Permission.TENANT_CREATE)
def tenant_new():
    form = TenantCreateForm()
    if form.validate_on_submit():
        try:
            tenant = services.create_tenant(
                request_session(),
                slug=form.slug.data,
                name=form.name.data,
                domains=_parse_domains(form.domains.data),
                max_users=form.max_users.data,
                actor=current_actor(),
                base_domain=settings().base_domain,
            )
        except services.TenancyError as exc:
            field = getattr(form, exc.field or "slug", form.slug)
            field.errors = [*field.errors, str(exc)]
        else:
            return see_other(
                url_for("console.tenant", slug=tenant.slug), toast=f"Tenant {tenant.name} created"
            )
    status = 422 if request.method == "POST" else 200
    return render_page("console/tenant_new.html", "form", form=form, status=status)


def access_tenant(slug: str, *, lock: bool = False) -> Tenant:
    """The tenant, or 404 when it does not exist or is outside what the member may see (the
    same answer, so a restricted member learns nothing about other tenants)."""
    query = visible(
        select(Tenant).where(Tenant.slug == slug),
        staff_services.visible_tenant_filter(tenant_scope()),
    )
    if lock:
        query = query.with_for_update()
    tenant = request_session().scalars(query).first()
    if tenant is None:
        abort(404)
    return tenant


def tenant_entries(tenant: Tenant, limit: int = 10):
    return (
        request_session()
        .scalars(
            select(PlatformAuditEntry)
            .where(
                PlatformAuditEntry.target_type == "tenant",
                PlatformAuditEntry.target_id == str(tenant.id),
            )
            .order_by(PlatformAuditEntry.seq.desc())
            .limit(limit)
        )
        .all()
    )


def render_tenant(tenant: Tenant, block: str | None = None, *, status: int = 200, **forms):
    limits = forms.pop("limits_form", None) or LimitsForm(
        formdata=None,
        max_users=tenant.max_users,
        max_storage_bytes=tenant.max_storage_bytes,
        api_requests_per_minute=tenant.api_requests_per_minute,
    )
    # Only what the response shows is fetched: an HTMX fragment of the domains or limits card
    # needs neither the user count nor the recent changes.
    full_page = not (block and wants_fragment())
    context = dict(
        t=tenant,
        head=head_revision(),
        rename_form=forms.pop("rename_form", None) or RenameForm(formdata=None, name=tenant.name),
        domain_form=forms.pop("domain_form", None) or DomainForm(formdata=None),
        remove_form=RemoveDomainForm(formdata=None),
        limits_form=limits,
        suspend_form=forms.pop("suspend_form", None) or SuspendForm(formdata=None),
        delete_form=forms.pop("delete_form", None) or DeleteForm(formdata=None),
        action_form=ActionForm(formdata=None),
        entries=tenant_entries(tenant) if full_page or block == "lifecycle" else [],
        users=usage.user_counts(request_session(), [tenant.slug]).get(tenant.slug)
        if full_page
        else None,
        lifecycle_error=forms.pop("lifecycle_error", None),
        tenant_result=None,
    )
    return render_page("console/tenant.html", block, status=status, **context)


def changed(tenant: Tenant, block: str, toast: str):
    """After a change: the updated block for HTMX (with a toast event), else back to the page."""
    if wants_fragment():
        response = render_tenant(tenant, block)
        response.headers["HX-Trigger"] = json.dumps({"toast": toast})
        return response
    return see_other(url_for("console.tenant", slug=tenant.slug), toast=toast)


@bp.get("/tenants/<slug>")
@requires(Permission.TENANT_VIEW)
def tenant(slug):
    return render_tenant(access_tenant(slug))


@bp.post("/tenants/<slug>/audit/verify")
@requires(Permission.AUDIT_VERIFY)
def tenant_audit_verify(slug):
    """Verify the tenant's own trail (read-only: hashes only, no personal data is shown)."""
    tenant = access_tenant(slug)
    if not ActionForm().validate_on_submit():
        abort(400)
    if tenant.status == TenantStatus.DELETED:
        abort(404)
    with db.tenant_scope(tenant.slug) as tenant_session:
        result = verify_chain(tenant_session)
    if wants_fragment():
        return render_page(
            "console/tenant.html",
            "tenant_verify",
            t=tenant,
            tenant_result=result,
            action_form=ActionForm(formdata=None),
        )
    flash(result.message(f"tenant {slug}"), "success" if result.ok else "danger")
    return see_other(url_for("console.tenant", slug=slug))


@bp.post("/tenants/<slug>/name")
@requires(Permission.TENANT_UPDATE)
def rename(slug):
    tenant = access_tenant(slug, lock=True)
    form = RenameForm()
    if form.validate_on_submit():
        try:
            services.rename_tenant(
                request_session(), tenant, name=form.name.data, actor=current_actor()
            )
        except services.TenancyError as exc:
            form.name.errors = [str(exc)]
        else:
            return see_other(
                url_for("console.tenant", slug=slug), toast=f"Renamed to {tenant.name}"
            )
    return render_tenant(tenant, "naming", status=422, rename_form=form)


@bp.post("/tenants/<slug>/domains")
@requires(Permission.TENANT_UPDATE)
def domain_add(slug):
    tenant = access_tenant(slug, lock=True)
    form = DomainForm()
    if form.validate_on_submit():
        try:
            services.add_domain(
                request_session(),
                tenant,
                form.domain.data,
                actor=current_actor(),
                base_domain=settings().base_domain,
            )
        except services.TenancyError as exc:
            form.domain.errors = [str(exc)]
        else:
            return changed(tenant, "domains", f"Domain {form.domain.data.strip().lower()} added")
    return render_tenant(tenant, "domains", status=422, domain_form=form)


@bp.post("/tenants/<slug>/domains/remove")
@requires(Permission.TENANT_UPDATE)
def domain_remove(slug):
    tenant = access_tenant(slug, lock=True)
    form = RemoveDomainForm()
    if not form.validate_on_submit():
        abort(400)
    services.remove_domain(request_session(), tenant, form.domain.data, actor=current_actor())
    return changed(tenant, "domains", f"Domain {form.domain.data} removed")


@bp.post("/tenants/<slug>/limits")
@requires(Permission.TENANT_UPDATE)
def limits(slug):
    tenant = access_tenant(slug, lock=True)
    form = LimitsForm()
    if form.validate_on_submit():
        try:
            services.update_limits(
                request_session(),
                tenant,
                actor=current_actor(),
                max_users=form.max_users.data,
                max_storage_bytes=form.max_storage_bytes.data,
                api_requests_per_minute=form.api_requests_per_minute.data,
            )
        except services.TenancyError as exc:
            getattr(form, exc.field or "max_users").errors = [str(exc)]
        else:
            return changed(tenant, "limits", "Limits saved")
    return render_tenant(tenant, "limits", status=422, limits_form=form)


@bp.post("/tenants/<slug>/suspend")
@requires(Permission.TENANT_SUSPEND)
def suspend(slug):
    tenant = access_tenant(slug, lock=True)
    form = SuspendForm()
    if form.validate_on_submit():
        try:
            services.suspend_tenant(
                request_session(), tenant, actor=current_actor(), reason=form.reason.data
            )
        except services.TenancyError as exc:
            form.reason.errors = [str(exc)]
        else:
            return see_other(
                url_for("console.tenant", slug=slug), toast=f"Tenant {tenant.name} suspended"
            )
    return render_tenant(tenant, "lifecycle", status=422, suspend_form=form)


@bp.post("/tenants/<slug>/resume")
@requires(Permission.TENANT_SUSPEND)
def resume(slug):
    tenant = access_tenant(slug, lock=True)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        services.resume_tenant(request_session(), tenant, actor=current_actor())
    except services.TenancyError as exc:
        return render_tenant(tenant, "lifecycle", status=422, lifecycle_error=str(exc))
    return see_other(url_for("console.tenant", slug=slug), toast=f"Tenant {tenant.name} resumed")


@bp.post("/tenants/<slug>/delete")
@requires(Permission.TENANT_DELETE)
def delete(slug):
    tenant = access_tenant(slug, lock=True)
    form = DeleteForm()
    if form.validate_on_submit():
        if form.confirm_slug.data.strip() != tenant.slug:
            form.confirm_slug.errors = [f"Type “{tenant.slug}” exactly to delete this tenant."]
        else:
            services.delete_tenant(
                request_session(),
                tenant,
                actor=current_actor(),
                grace_days=settings().tenant_purge_grace_days,
            )
            return see_other(
                url_for("console.tenant", slug=slug), toast=f"Tenant {tenant.name} deleted"
            )
    return render_tenant(tenant, "lifecycle", status=422, delete_form=form)


@bp.post("/tenants/<slug>/restore")
@requires(Permission.TENANT_DELETE)
def restore(slug):
    tenant = access_tenant(slug, lock=True)
    if not ActionForm().validate_on_submit():
        abort(400)
    services.restore_tenant(request_session(), tenant, actor=current_actor())
    return see_other(url_for("console.tenant", slug=slug), toast=f"Tenant {tenant.name} restored")


# ---- audit --------------------------------------------------------------------------------


def _parse_date(raw: str | None):
    try:
        return datetime.strptime(raw, "%Y-%m-%d").date() if raw else None
    except ValueError:
        return None


def audit_filters(values=None) -> tuple[list, dict[str, str]]:
    """SQL conditions and the normalised filter values from the audit page's query string (or
    from `values`: the export's form fields)."""
    values = request.args if values is None else values
    model = PlatformAuditEntry
    action = values.get("action", "").strip()[:64]
    actor = values.get("actor", "").strip()[:320]
    date_from = _parse_date(values.get("from"))
    date_to = _parse_date(values.get("to"))
    conditions = []
    if action:
        conditions.append(model.action.startswith(action, autoescape=True))
    if actor:
        conditions.append(
            or_(model.actor_label.icontains(actor, autoescape=True), model.actor_id == actor)
        )
    if date_from:
        conditions.append(model.occurred_at >= datetime.combine(date_from, time.min, UTC))
    if date_to and date_to < datetime.max.date():  # the day after 9999-12-31 does not exist
        conditions.append(
            model.occurred_at < datetime.combine(date_to + timedelta(days=1), time.min, UTC)
        )
    only_visible = staff_services.visible_audit_filter(tenant_scope())
    if only_visible is not None:
        conditions.append(only_visible)
    filters = {
        "action": action,
        "actor": actor,
        "from": date_from.isoformat() if date_from else "",
        "to": date_to.isoformat() if date_to else "",
    }
    return conditions, filters


@bp.get("/audit")
@requires(Permission.AUDIT_VIEW)
def audit():
    session = request_session()
    model = PlatformAuditEntry
    conditions, filters = audit_filters()
    query = select(model).where(and_(true(), *conditions))
    before = request.args.get("before", type=int)
    if before and 0 < before < 2**63:
        query = query.where(model.seq < before)
    rows = session.scalars(query.order_by(model.seq.desc()).limit(PAGE_SIZE + 1)).all()
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    actions = session.scalars(
        visible(select(model.action), staff_services.visible_audit_filter(tenant_scope()))
        .distinct()
        .order_by(model.action)
    ).all()
    active = {k: v for k, v in filters.items() if v}
    older_url = None
    if rows and more:
        older_url = url_for("console.audit", before=rows[-1].seq, **active)
    return render_page(
        "console/audit.html",
        "results",
        rows=rows,
        actions=actions,
        filters=filters,
        older_url=older_url,
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
    conditions, filters = audit_filters(request.form)
    record(
        request_session(),
        AuditAction.AUDIT_EXPORT,
        actor=current_actor(),
        detail={k: v for k, v in filters.items() if v},
    )

    query = (
        select(PlatformAuditEntry).where(and_(true(), *conditions)).order_by(PlatformAuditEntry.seq)
    )
    return audit_csv.response(query, db.platform_scope, f"platform-audit-{audit_csv.stamp()}.csv")


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
