"""Which tenants a staff member may see.

A member with `all_tenants` False sees only the tenants assigned to them (an MSP technician's
customers); platform admins always see every tenant, whatever the flag says. Every console read
of tenants or of tenant-targeted audit entries applies these filters; a tenant outside the scope
answers 404, exactly like one that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, and_, delete, func, select
from sqlalchemy.orm import Session

from portal.accounts.validation import AccountError
from portal.compliance.audit import Actor, AuditAction, record
from portal.compliance.models import PlatformAuditEntry
from portal.staff.models import StaffRole, StaffTenant, StaffUser
from portal.staff.sessions import end_tenant_visits_after_commit
from portal.tenancy.models import Tenant


def sees_all_tenants(staff) -> bool:
    """`staff` is a StaffUser or the plain row loaded with a staff session."""
    return staff.role == StaffRole.PLATFORM_ADMIN or staff.all_tenants


def visible_tenant_ids(session: Session, staff) -> frozenset[int] | None:
    """The ids of the tenants `staff` may see, or None when they may see every tenant."""
    if sees_all_tenants(staff):
        return None
    return frozenset(
        session.scalars(select(StaffTenant.tenant_id).where(StaffTenant.staff_id == staff.id))
    )


def visible_tenant_filter(tenant_ids: frozenset[int] | None) -> ColumnElement[bool] | None:
    """A where-clause on Tenant for `visible_tenant_ids`, or None for no restriction."""
    if tenant_ids is None:
        return None
    return Tenant.id.in_(sorted(tenant_ids))


def visible_audit_filter(tenant_ids: frozenset[int] | None) -> ColumnElement[bool] | None:
    """A where-clause on the platform trail: a restricted member sees only the entries that
    target one of their tenants (not staff sign-ins, other tenants, or platform changes)."""
    if tenant_ids is None:
        return None
    return and_(
        PlatformAuditEntry.target_type == "tenant",
        PlatformAuditEntry.target_id.in_([str(i) for i in sorted(tenant_ids)]),
    )


def set_staff_tenants(
    session: Session,
    member: StaffUser,
    *,
    all_tenants: bool,
    tenant_ids: Iterable[int],
    actor: Actor,
) -> bool:
    """Let `member` see every tenant, or only `tenant_ids`. False when nothing changes.

    The caller locks `member`'s row. Choosing every tenant clears the assignments, so a later
    restriction starts from an empty list rather than a forgotten one.
    """
    if member.role == StaffRole.PLATFORM_ADMIN:
        raise AccountError(
            "Platform admins always see every tenant; change the role first.", "tenant_ids"
        )
    wanted = set() if all_tenants else {int(i) for i in tenant_ids}
    if not all_tenants and not wanted:
        raise AccountError("Choose at least one tenant, or All tenants.", "tenant_ids")
    plausible = {i for i in wanted if 0 < i < 2**31}  # larger ids would fail as int4
    slugs = dict(
        session.execute(select(Tenant.id, Tenant.slug).where(Tenant.id.in_(plausible))).all()
    )
    if unknown := wanted - slugs.keys():
        raise AccountError(
            f"No tenant with id {', '.join(map(str, sorted(unknown)))}.", "tenant_ids"
        )
    current = dict(
        session.execute(
            select(Tenant.id, Tenant.slug)
            .join(StaffTenant, StaffTenant.tenant_id == Tenant.id)
            .where(StaffTenant.staff_id == member.id)
        ).all()
    )
    if member.all_tenants == all_tenants and current.keys() == wanted:
        return False
    before = {"all_tenants": member.all_tenants, "tenants": sorted(current.values())}
    member.all_tenants = all_tenants
    removed = current.keys() - wanted
    if removed:
        session.execute(
            delete(StaffTenant).where(
                StaffTenant.staff_id == member.id, StaffTenant.tenant_id.in_(removed)
            )
        )
    session.add_all(
        StaffTenant(staff_id=member.id, tenant_id=tenant_id)
        for tenant_id in sorted(wanted - current.keys())
    )
    session.flush()
    end_tenant_visits_after_commit(session, member.id)
    record(
        session,
        AuditAction.STAFF_TENANTS_ASSIGN,
        actor=actor,
        target=("staff", member.id),
        detail={
            "before": before,
            "after": {"all_tenants": all_tenants, "tenants": sorted(slugs.values())},
        },
    )
    return True


def assigned_tenant_counts(session: Session) -> dict[int, int]:
    """How many tenants are assigned to each staff member who has any."""
    return dict(
        session.execute(
            select(StaffTenant.staff_id, func.count()).group_by(StaffTenant.staff_id)
        ).all()
    )
