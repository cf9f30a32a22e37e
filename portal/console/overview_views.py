"""The console overview: tenants by status, migrations behind, recent sign-ins and changes,
tenants near their quotas."""

from __future__ import annotations

from sqlalchemy import func, or_, select

from portal.compliance.models import PlatformAuditEntry
from portal.console.blueprint import bp
from portal.console.common import (
    visible,
    visible_tenant_ids,
)
from portal.permissions import Permission, requires
from portal.staff.scope import visible_audit_filter, visible_tenant_filter
from portal.tenancy import services, usage
from portal.tenancy.migrations import head_revision
from portal.tenancy.models import Tenant, TenantStatus
from portal.web import (
    render_page,
    request_session,
)


@bp.get("/")
@requires(Permission.TENANT_VIEW)
def overview():
    session = request_session()
    scope = visible_tenant_ids()
    only_visible = visible_tenant_filter(scope)
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
        visible(select(PlatformAuditEntry), visible_audit_filter(scope))
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
