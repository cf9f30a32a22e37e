"""Staff accounts: create, find, change role, deactivate and reactivate, change password.

There is always one active platform admin: removing the last one (demotion or deactivation) is
refused, under a lock on the admins' rows. A change of role ends the member's open tenant
visits, which carry the old role; deactivation ends every session as well.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from portal.accounts.validation import AccountError, validate_email
from portal.compliance.audit import Actor, AuditAction, record
from portal.password_policy import check_password
from portal.passwords import hash_password, verify_password
from portal.staff.models import StaffRole, StaffSession, StaffUser
from portal.staff.sessions import end_staff_sessions, end_tenant_visits_after_commit
from portal.validation import InputError

MIN_PASSWORD = 12


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


def find_staff(session: Session, email: str, *, lock: bool = False) -> StaffUser | None:
    query = select(StaffUser).where(func.lower(StaffUser.email) == (email or "").strip().lower())
    if lock:
        query = query.with_for_update()
    return session.scalars(query).first()


def change_staff_role(session: Session, member: StaffUser, role: str, *, actor: Actor) -> bool:
    if role not in set(StaffRole):
        raise AccountError(f"Unknown staff role {role!r}.", "role")
    if member.role == role:
        return False
    if member.role == StaffRole.PLATFORM_ADMIN:
        _keep_one_admin(session, member)
    before, member.role = member.role, role
    session.flush()
    end_tenant_visits_after_commit(session, member.id)
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
    end_tenant_visits_after_commit(session, member.id)
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
    ended = end_staff_sessions(session, member.id, except_session=current_session)
    session.flush()
    record(
        session,
        AuditAction.STAFF_PASSWORD_CHANGE,
        actor=actor,
        target=("staff", member.id),
        detail={"sessions_ended": ended},
    )
    return ended
