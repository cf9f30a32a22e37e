"""Console tenant pages: the list, creation, one tenant's page and each change to it (name,
domains, limits, suspend, resume, delete, restore, its own audit chain)."""

from __future__ import annotations

from functools import partial

from flask import abort, flash, request, url_for
from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import aggregate_order_by

from portal.compliance.audit import verify_chain
from portal.compliance.models import PlatformAuditEntry
from portal.console.auth import current_actor
from portal.console.blueprint import bp
from portal.console.common import (
    PAGE_SIZE,
    access_tenant,
    settings,
    visible,
    visible_tenant_ids,
)
from portal.console.forms import (
    DeleteForm,
    DomainForm,
    LimitsForm,
    RemoveDomainForm,
    RenameForm,
    SuspendForm,
    TenantCreateForm,
)
from portal.db import db
from portal.forms import ActionForm, attach_error
from portal.pagination import Filter, ListSpec, choice_filter
from portal.permissions import Permission, requires
from portal.staff.scope import visible_tenant_filter
from portal.tenancy import services, usage
from portal.tenancy.migrations import head_revision
from portal.tenancy.models import Tenant, TenantDomain, TenantStatus
from portal.web import (
    after_change,
    render_page,
    request_session,
    see_other,
    wants_fragment,
)

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
TENANTS = ListSpec(
    filters=(
        Filter("q", lambda raw: raw[:100]),  # slug, name or domain contains
        choice_filter("status", TenantStatus),
    ),
    sorts={
        "slug": ("slug",),
        "name": ("name", "slug"),
        "created": ("created_at", "slug"),
        "status": ("status", "slug"),
    },
    default_sort="slug",
    size=PAGE_SIZE,
    total_in_page=True,
)


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
    query = TENANTS.parse(request.args)
    only_visible = visible_tenant_filter(visible_tenant_ids())
    filtered = tenant_query(query.filters["q"], query.filters["status"], only_visible).cte(
        "filtered"
    )
    domains = (
        select(func.array_agg(aggregate_order_by(TenantDomain.domain, TenantDomain.domain)))
        .where(TenantDomain.tenant_id == filtered.c.id)
        .scalar_subquery()
        .label("domains")
    )
    listing = TENANTS.page(
        request_session(),
        filtered,
        query,
        statement=select(filtered, domains),
        url=partial(url_for, "console.tenants"),
        size=PAGE_SIZE,
    )
    return render_page(
        "console/tenants.html",
        "results",
        tenants=listing,
        statuses=list(TenantStatus),
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
            attach_error(form, exc, "slug")
        else:
            return after_change(
                url_for("console.tenant", slug=tenant.slug), f"Tenant {tenant.name} created"
            )
    status = 422 if request.method == "POST" else 200
    return render_page("console/tenant_new.html", "form", form=form, status=status)


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


def tenant_changed(tenant: Tenant, toast: str, block: str | None = None):
    """After a change: the tenant's page (for HTMX, just `block` when the change shows there
    alone), with a toast."""
    return after_change(
        url_for("console.tenant", slug=tenant.slug),
        toast,
        fragment=(lambda: render_tenant(tenant, block)) if block else None,
    )


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
            attach_error(form, exc, "name")
        else:
            return tenant_changed(tenant, f"Renamed to {tenant.name}")
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
            attach_error(form, exc, "domain")
        else:
            return tenant_changed(
                tenant, f"Domain {form.domain.data.strip().lower()} added", "domains"
            )
    return render_tenant(tenant, "domains", status=422, domain_form=form)


@bp.post("/tenants/<slug>/domains/remove")
@requires(Permission.TENANT_UPDATE)
def domain_remove(slug):
    tenant = access_tenant(slug, lock=True)
    form = RemoveDomainForm()
    if not form.validate_on_submit():
        abort(400)
    services.remove_domain(request_session(), tenant, form.domain.data, actor=current_actor())
    return tenant_changed(tenant, f"Domain {form.domain.data} removed", "domains")


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
            attach_error(form, exc, "max_users")
        else:
            return tenant_changed(tenant, "Limits saved", "limits")
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
            attach_error(form, exc, "reason")
        else:
            return tenant_changed(tenant, f"Tenant {tenant.name} suspended")
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
    return tenant_changed(tenant, f"Tenant {tenant.name} resumed")


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
            return tenant_changed(tenant, f"Tenant {tenant.name} deleted")
    return render_tenant(tenant, "lifecycle", status=422, delete_form=form)


@bp.post("/tenants/<slug>/restore")
@requires(Permission.TENANT_DELETE)
def restore(slug):
    tenant = access_tenant(slug, lock=True)
    if not ActionForm().validate_on_submit():
        abort(400)
    services.restore_tenant(request_session(), tenant, actor=current_actor())
    return tenant_changed(tenant, f"Tenant {tenant.name} restored")
