"""Staff two-factor authentication: the second sign-in step, enrolment, backup codes, turning it
off, and the lost-device reset.

The tenant users' machinery (portal/auth/second_factor.py): TOTP secrets sealed with
portal.crypto, each time step accepted once (checked under the staff row's lock), 10 single-use
backup codes stored as keyed hashes. With MFA enrolled, only a completed second step clears the
account's failure count in the sign-in throttle.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from portal.accounts.validation import AccountError
from portal.auth import second_factor
from portal.auth.throttle import SignInThrottle
from portal.compliance.audit import Actor, AuditAction, record
from portal.passwords import verify_password
from portal.staff.models import StaffBackupCode, StaffSession, StaffUser
from portal.staff.sessions import end_staff_sessions, end_tenant_visits_after_commit

STAFF_BACKUP_CODES = second_factor.BackupCodes(StaffBackupCode, "staff_id")
SECOND_STEP = second_factor.SecondStep(
    codes=STAFF_BACKUP_CODES,
    target="staff",
    may_sign_in=lambda member: member.active,
    failed=AuditAction.STAFF_MFA_FAILED,
    throttled=AuditAction.STAFF_SIGN_IN_FAILED,
    backup_code_used=AuditAction.STAFF_MFA_BACKUP_CODE_USED,
)


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
    return second_factor.check(session, member, code, SECOND_STEP, actor=actor, throttle=throttle)


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
    ended = end_staff_sessions(session, member.id)
    end_tenant_visits_after_commit(session, member.id)
    record(
        session,
        AuditAction.STAFF_MFA_RESET,
        actor=actor,
        target=("staff", member.id),
        detail={"sessions_ended": ended},
    )
    return True
