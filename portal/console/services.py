"""Staff accounts, staff sign-in, and the tenants each staff member may see (platform schema)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, and_, delete, func, select
from sqlalchemy.orm import Session

from portal import sessions
from portal.accounts.services import EMAIL_RE, AccountError
from portal.auth.throttle import SignInThrottle
from portal.compliance.audit import Actor, AuditAction, record
from portal.compliance.models import PlatformAuditEntry
from portal.console.models import StaffRole, StaffSession, StaffTenant, StaffUser
from portal.db import on_commit
from portal.passwords import hash_password, verify_password
from portal.tenancy.models import Tenant

MIN_PASSWORD = 12
MAX_PASSWORD = 1024


def validate_password(password: str, email: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"Use at least {MIN_PASSWORD} characters.", "password")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"Use at most {MAX_PASSWORD} characters.", "password")
    if password.strip().lower() == email.strip().lower():
        raise AccountError("The password must not be your email address.", "password")
    return password


def create_staff(
    session: Session, *, email: str, name: str = "", role: str, password: str, actor: Actor
) -> StaffUser:
    email = (email or "").strip()
    if not EMAIL_RE.match(email):
        raise AccountError("Enter a valid email address.", "email")
    if role not in set(StaffRole):
        raise AccountError(f"Unknown staff role {role!r}.", "role")
    validate_password(password, email)
    if session.scalar(select(StaffUser.id).where(func.lower(StaffUser.email) == email.lower())):
        raise AccountError(f"A staff member with email {email} already exists.", "email")
    member = StaffUser(
        email=email,
        name=" ".join(name.split()),
        role=role,
        password_hash=hash_password(password),
        active=True,
    )
    session.add(member)
    session.flush()
    record(
        session,
        AuditAction.STAFF_CREATE,
        actor=actor,
        target=("staff", member.id),
        detail={"role": role},
        personal={"email": email},
    )
    return member


def authenticate_staff(
    session: Session,
    email: str,
    password: str,
    *,
    actor: Actor,
    throttle: SignInThrottle | None = None,
) -> StaffUser | None:
    """The staff member for these credentials, or None.

    Every path costs one Argon2 verification, so unknown emails, wrong passwords and throttled
    attempts take the same time; a throttled attempt is refused even with the right password.
    """
    email = (email or "").strip()[:320]
    waiting = throttle.wait_seconds(email, actor.client_addr) if throttle else 0
    member = session.scalars(
        select(StaffUser).where(func.lower(StaffUser.email) == email.lower())
    ).first()
    ok = verify_password(member.password_hash if member else None, password or "")
    if waiting or not ok or member is None or not member.active:
        reason = "throttled" if waiting else "inactive" if ok and member else "bad_credentials"
        if throttle and not waiting:
            throttle.failed(email, actor.client_addr)
        record(
            session,
            AuditAction.STAFF_SIGN_IN_FAILED,
            actor=actor,
            target=("staff", member.id) if member else None,
            detail={"reason": reason},
            personal={"email": email},
        )
        return None
    if throttle:
        throttle.succeeded(email)
    return member


STAFF_IDLE_SECONDS = 60 * 60
STAFF_ABSOLUTE_SECONDS = 12 * 60 * 60


def start_staff_session(
    session: Session, member: StaffUser, *, actor: Actor, user_agent: str | None
) -> tuple[str, StaffSession]:
    """A new server-side session with a fresh random token (the old one, if any, is useless)."""
    token, row = sessions.start(
        session,
        StaffSession,
        owner_field="staff_id",
        owner_id=member.id,
        client_addr=actor.client_addr,
        user_agent=user_agent,
    )
    member.last_sign_in_at = datetime.now(UTC)
    record(
        session,
        AuditAction.STAFF_SIGN_IN,
        actor=actor,
        target=("staff", member.id),
        detail={"session": row.id},
    )
    return token, row


def end_staff_session(session: Session, token: str, *, actor: Actor) -> None:
    row = sessions.end(session, StaffSession, token)
    if row is not None:
        record(
            session,
            AuditAction.STAFF_SIGN_OUT,
            actor=actor,
            target=("staff", row.staff_id),
            detail={"session": row.id},
        )


def load_staff_session(session: Session, token: str):
    """The signed-in staff member's row (staff columns plus `session_id`), or None."""
    row = sessions.load(
        session,
        StaffSession,
        StaffUser,
        token,
        idle_seconds=STAFF_IDLE_SECONDS,
        absolute_seconds=STAFF_ABSOLUTE_SECONDS,
    )
    return row if row is not None and row.active else None


def change_staff_role(session: Session, member: StaffUser, role: str, *, actor: Actor) -> bool:
    if role not in set(StaffRole):
        raise AccountError(f"Unknown staff role {role!r}.", "role")
    if member.role == role:
        return False
    if member.role == StaffRole.PLATFORM_ADMIN:
        _keep_one_admin(session, member)
    before, member.role = member.role, role
    session.flush()
    _end_tenant_visits_after_commit(session, member.id)
    record(
        session,
        AuditAction.STAFF_UPDATE,
        actor=actor,
        target=("staff", member.id),
        detail={"before": {"role": before}, "after": {"role": role}},
    )
    return True


def deactivate_staff(session: Session, member: StaffUser, *, actor: Actor) -> bool:
    """Block sign-in and end every session of the staff member at once."""
    if not member.active:
        return False
    if actor.type == "staff" and actor.id == str(member.id):
        raise AccountError("You cannot deactivate your own account.")
    if member.role == StaffRole.PLATFORM_ADMIN:
        _keep_one_admin(session, member)
    member.active = False
    ended = session.execute(delete(StaffSession).where(StaffSession.staff_id == member.id)).rowcount
    _end_tenant_visits_after_commit(session, member.id)
    session.flush()
    record(
        session,
        AuditAction.STAFF_DEACTIVATE,
        actor=actor,
        target=("staff", member.id),
        detail={"sessions_ended": ended},
    )
    return True


def reactivate_staff(session: Session, member: StaffUser, *, actor: Actor) -> bool:
    if member.active:
        return False
    member.active = True
    session.flush()
    record(session, AuditAction.STAFF_REACTIVATE, actor=actor, target=("staff", member.id))
    return True


def _end_tenant_visits_after_commit(session: Session, staff_id: int) -> None:
    """A staff member's open tenant-site visits carry their old role: end them with the change."""
    from portal.auth import staff_access
    from portal.queue import queues

    on_commit(session, lambda: staff_access.end_staff_visits(queues.redis, staff_id))


def _keep_one_admin(session: Session, member: StaffUser) -> None:
    """Refuse to remove the last active platform admin (rows locked: two admins demoting each
    other at once cannot both succeed)."""
    admins = session.scalars(
        select(StaffUser.id)
        .where(StaffUser.role == StaffRole.PLATFORM_ADMIN, StaffUser.active)
        .with_for_update()
    ).all()
    if not [staff_id for staff_id in admins if staff_id != member.id]:
        raise AccountError("This is the last active platform admin; promote someone else first.")


# ---- tenant scope -------------------------------------------------------------------------
#
# A staff member with `all_tenants` False sees only the tenants assigned to them (an MSP
# technician's customers); platform admins always see every tenant, whatever the flag says.
# Every console read of tenants or of tenant-targeted audit entries applies these filters; a
# tenant outside the scope answers 404, exactly like one that does not exist.


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
    _end_tenant_visits_after_commit(session, member.id)
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
