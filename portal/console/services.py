"""Staff accounts, staff sign-in (password, then TOTP or a backup code), their own account
(password, MFA, sessions), and the tenants each staff member may see (platform schema).

Staff MFA reuses the tenant users' machinery (portal/auth/second_factor.py): TOTP secrets sealed
with portal.crypto, each time step accepted once (checked under the staff row's lock), 10
single-use backup codes stored as keyed hashes. With MFA enrolled, only a completed second step
clears the account's failure count in the sign-in throttle.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, and_, delete, func, select
from sqlalchemy.orm import Session

from portal import sessions
from portal.accounts.validation import AccountError, validate_email
from portal.auth import second_factor
from portal.auth.throttle import SignInThrottle
from portal.compliance.audit import Actor, AuditAction, record
from portal.compliance.models import PlatformAuditEntry
from portal.console.models import (
    StaffBackupCode,
    StaffRole,
    StaffSession,
    StaffTenant,
    StaffUser,
)
from portal.db import on_commit
from portal.password_policy import check_password
from portal.passwords import hash_password, rehashed, verify_password
from portal.tenancy.models import Tenant
from portal.validation import InputError

MIN_PASSWORD = 12
STAFF_BACKUP_CODES = second_factor.BackupCodes(StaffBackupCode, "staff_id")


def validate_password(password: str, email: str, field: str = "password") -> str:
    """The common-password policy of tenant users (A3), with a 12-character minimum."""
    try:
        return check_password(password, email=email, min_length=MIN_PASSWORD)
    except InputError as error:
        raise AccountError(str(error), field) from None


def create_staff(
    session: Session, *, email: str, name: str = "", role: str, password: str, actor: Actor
) -> StaffUser:
    # The tenant users' rule: at most 320 characters, and no letter whose lower case Python and
    # PostgreSQL disagree on (the lower(email) unique index would otherwise answer a 500).
    email = validate_email(email)
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
    if (fresh := rehashed(member.password_hash, password)) is not None:
        member.password_hash = fresh  # made with older Argon2 parameters (portal/passwords.py)
    if throttle and not member.mfa_enabled:
        throttle.succeeded(email)  # with MFA, only the second step clears the count
    return member


def check_staff_second_factor(
    session: Session,
    member: StaffUser,
    code: str,
    *,
    actor: Actor,
    throttle: SignInThrottle | None,
) -> str | None:
    """Second step: "totp" or "backup_code" when `code` is right, else None (audited, counted).
    The staff row is locked, so one code cannot pass twice at once."""
    session.refresh(member, with_for_update=True)
    waiting = throttle.wait_seconds(member.email, actor.client_addr) if throttle else 0
    method = (
        None
        if waiting or not member.active
        else second_factor.match(session, member, STAFF_BACKUP_CODES, (code or "")[:64])
    )
    if method is None:
        if throttle and not waiting:
            throttle.failed(member.email, actor.client_addr)
        record(
            session,
            AuditAction.STAFF_SIGN_IN_FAILED if waiting else AuditAction.STAFF_MFA_FAILED,
            actor=actor,
            target=("staff", member.id),
            detail={"reason": "throttled" if waiting else "bad_code", "step": "mfa"},
        )
        return None
    if method == "backup_code":
        record(
            session,
            AuditAction.STAFF_MFA_BACKUP_CODE_USED,
            actor=actor,
            target=("staff", member.id),
            detail={"left": staff_backup_codes_left(session, member.id)},
        )
    if throttle:
        throttle.succeeded(member.email)
    return method


STAFF_IDLE_SECONDS = 60 * 60
STAFF_ABSOLUTE_SECONDS = 12 * 60 * 60


def start_staff_session(
    session: Session,
    member: StaffUser,
    *,
    actor: Actor,
    user_agent: str | None,
    method: str = "password",
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
    row.method = method
    member.last_sign_in_at = datetime.now(UTC)
    session.flush()
    record(
        session,
        AuditAction.STAFF_SIGN_IN,
        actor=actor,
        target=("staff", member.id),
        detail={"session": row.id, "method": method},
    )
    return token, row


def end_staff_session(session: Session, token: str, *, actor: Actor) -> None:
    """Sign out: the session row goes, and with it every tenant visit it started (the tenant
    sites check the row on each request; their Redis records are dropped after commit too)."""
    row = sessions.end(session, StaffSession, token)
    if row is not None:
        _end_console_visits_after_commit(session, [row.id])
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
        extra_columns=[StaffSession.method.label("session_method")],
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


def _end_console_visits_after_commit(session: Session, session_ids: list[int]) -> None:
    from portal.auth import staff_access
    from portal.queue import queues

    on_commit(
        session,
        lambda: [staff_access.end_console_visits(queues.redis, i) for i in session_ids],
    )


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


# ---- the staff member's own account: password, MFA, sessions ------------------------------


def change_staff_password(
    session: Session,
    member: StaffUser,
    *,
    current: str,
    new: str,
    actor: Actor,
    current_session: int | None,
) -> int:
    """Change the password (the current one is required, the new one meets the common-password
    policy); every other session of the member ends. Returns how many ended."""
    if not verify_password(member.password_hash, current or ""):
        raise AccountError("That is not your current password.", "current_password")
    if new == current:
        raise AccountError("Choose a password different from the current one.", "new_password")
    validate_password(new, member.email, "new_password")
    member.password_hash = hash_password(new)
    ended = _end_sessions(session, member.id, except_session=current_session)
    session.flush()
    record(
        session,
        AuditAction.STAFF_PASSWORD_CHANGE,
        actor=actor,
        target=("staff", member.id),
        detail={"sessions_ended": ended},
    )
    return ended


def _end_sessions(session: Session, staff_id: int, *, except_session: int | None = None) -> int:
    query = select(StaffSession.id).where(StaffSession.staff_id == staff_id)
    if except_session is not None:
        query = query.where(StaffSession.id != except_session)
    ids = list(session.scalars(query))
    if ids:
        session.execute(delete(StaffSession).where(StaffSession.id.in_(ids)))
        _end_console_visits_after_commit(session, ids)
    return len(ids)


def staff_sessions_of(session: Session, staff_id: int) -> list[StaffSession]:
    return list(
        session.scalars(
            select(StaffSession)
            .where(StaffSession.staff_id == staff_id)
            .order_by(StaffSession.last_seen_at.desc())
        )
    )


def revoke_staff_session(session: Session, staff_id: int, session_id: int, *, actor: Actor) -> bool:
    """End one of the member's own sessions (and the tenant visits it started); False if the
    session is not theirs or already gone."""
    ended = session.execute(
        delete(StaffSession).where(StaffSession.id == session_id, StaffSession.staff_id == staff_id)
    ).rowcount
    if not ended:
        return False
    _end_console_visits_after_commit(session, [session_id])
    record(
        session,
        AuditAction.STAFF_SESSION_REVOKE,
        actor=actor,
        target=("staff", staff_id),
        detail={"session": session_id},
    )
    return True


def start_staff_mfa_enrolment(session: Session, member: StaffUser) -> str:
    """A new pending TOTP secret (sealed on the member until confirmed with a code)."""
    if member.mfa_enabled:
        raise AccountError("Two-factor authentication is already on.")
    secret = second_factor.begin_enrolment(member)
    session.flush()
    return secret


def pending_staff_mfa_secret(member) -> str | None:
    return second_factor.pending_secret(member)


def confirm_staff_mfa_enrolment(
    session: Session,
    member: StaffUser,
    code: str,
    *,
    actor: Actor,
    current_session: int | None = None,
) -> list[str]:
    """Turn MFA on once the member's app shows the right code; returns 10 backup codes, shown
    once. The session that enrolled has proven the second factor, so it counts as one that
    used it (a tenant hand-off that needs MFA is then allowed)."""
    session.refresh(member, with_for_update=True)
    if member.mfa_enabled:
        raise AccountError("Two-factor authentication is already on.")
    if second_factor.pending_secret(member) is None:
        raise AccountError("Start again: scan the new QR code.", "code")
    if second_factor.accept_totp(member, code or "") is None:
        raise AccountError(
            "That code is not right. Check your device's clock and try again.", "code"
        )
    second_factor.enable(member)
    codes = STAFF_BACKUP_CODES.replace(session, member.id)
    if current_session is not None:
        row = session.get(StaffSession, current_session)
        if row is not None and row.staff_id == member.id:
            row.method = "totp"
    session.flush()
    record(session, AuditAction.STAFF_MFA_ENROL, actor=actor, target=("staff", member.id))
    return codes


def enrol_staff_mfa(session: Session, member: StaffUser, secret: str, *, actor: Actor) -> list[str]:
    """Enrol `member` with a known TOTP secret (the demo seed's development secret, tests);
    returns the backup codes."""
    if member.mfa_enabled:
        raise AccountError("Two-factor authentication is already on.")
    second_factor.set_secret(member, secret)
    second_factor.enable(member)
    codes = STAFF_BACKUP_CODES.replace(session, member.id)
    record(
        session,
        AuditAction.STAFF_MFA_ENROL,
        actor=actor,
        target=("staff", member.id),
        detail={"known_secret": True},
    )
    return codes


def regenerate_staff_backup_codes(
    session: Session, member: StaffUser, *, actor: Actor
) -> list[str]:
    """A new set of 10 codes; the old set stops working."""
    if not member.mfa_enabled:
        raise AccountError("Turn on two-factor authentication first.")
    codes = STAFF_BACKUP_CODES.replace(session, member.id)
    record(session, AuditAction.STAFF_MFA_BACKUP_CODES, actor=actor, target=("staff", member.id))
    return codes


def staff_backup_codes_left(session: Session, staff_id: int) -> int:
    return STAFF_BACKUP_CODES.left(session, staff_id)


def disable_staff_mfa(
    session: Session, member: StaffUser, *, password: str, actor: Actor, required: bool
) -> bool:
    """Turn MFA off after re-entering the password; refused while the platform requires it."""
    if not member.mfa_enabled:
        return False
    if not verify_password(member.password_hash, password or ""):
        raise AccountError("That is not your password.", "password")
    if required:
        raise AccountError("Two-factor authentication is required for every staff member.")
    second_factor.clear(session, member, STAFF_BACKUP_CODES)
    record(session, AuditAction.STAFF_MFA_DISABLE, actor=actor, target=("staff", member.id))
    return True


def reset_staff_mfa(session: Session, member: StaffUser, *, actor: Actor) -> bool:
    """The lost-device case: remove the member's MFA and end their sessions (and tenant
    visits); they enrol again at their next sign-in. False when there was nothing to reset."""
    session.refresh(member, with_for_update=True)
    if not member.mfa_enabled and not member.mfa_secret:
        return False
    second_factor.clear(session, member, STAFF_BACKUP_CODES)
    ended = _end_sessions(session, member.id)
    _end_tenant_visits_after_commit(session, member.id)
    record(
        session,
        AuditAction.STAFF_MFA_RESET,
        actor=actor,
        target=("staff", member.id),
        detail={"sessions_ended": ended},
    )
    return True


def find_staff(session: Session, email: str, *, lock: bool = False) -> StaffUser | None:
    query = select(StaffUser).where(func.lower(StaffUser.email) == (email or "").strip().lower())
    if lock:
        query = query.with_for_update()
    return session.scalars(query).first()
