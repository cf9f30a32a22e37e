"""Staff accounts and staff sign-in (platform schema)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from portal import sessions
from portal.accounts.services import EMAIL_RE, AccountError
from portal.auth.throttle import SignInThrottle
from portal.compliance.audit import Actor, AuditAction, record
from portal.console.models import StaffRole, StaffSession, StaffUser
from portal.passwords import hash_password, verify_password

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
