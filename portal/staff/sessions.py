"""Staff sign-in and the server-side sessions it starts: the password step, then start, load,
list, revoke and end. Ending a session ends the tenant-site visits it started, after commit
(the tenant sites also check the session row on every request)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from portal import sessions as server_sessions
from portal.auth import staff_access
from portal.auth.throttle import SignInThrottle
from portal.compliance.audit import Actor, AuditAction, record
from portal.db import on_commit
from portal.passwords import rehashed, verify_password
from portal.queue import queues
from portal.staff.models import StaffSession, StaffUser

STAFF_IDLE_SECONDS = 60 * 60
STAFF_ABSOLUTE_SECONDS = 12 * 60 * 60


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
    With MFA enrolled, only the second step (portal/staff/mfa.py) clears the failure count.
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
            keep=True,
        )
        return None
    if (fresh := rehashed(member.password_hash, password)) is not None:
        member.password_hash = fresh  # made with older Argon2 parameters (portal/passwords.py)
    if throttle and not member.mfa_enabled:
        throttle.succeeded(email)  # with MFA, only the second step clears the count
    return member


def start_staff_session(
    session: Session,
    member: StaffUser,
    *,
    actor: Actor,
    user_agent: str | None,
    method: str = "password",
) -> tuple[str, StaffSession]:
    """A new server-side session with a fresh random token (the old one, if any, is useless)."""
    token, row = server_sessions.start(
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
    """Sign out: the session row goes, and with it every tenant visit it started."""
    row = server_sessions.end(session, StaffSession, token)
    if row is not None:
        end_console_visits_after_commit(session, [row.id])
        record(
            session,
            AuditAction.STAFF_SIGN_OUT,
            actor=actor,
            target=("staff", row.staff_id),
            detail={"session": row.id},
        )


# Built once: sessions.load caches its statement per tuple of extra columns.
_SESSION_METHOD = (StaffSession.method.label("session_method"),)


def load_staff_session(session: Session, token: str):
    """The signed-in staff member's row (staff columns plus `session_id`), or None."""
    row = server_sessions.load(
        session,
        StaffSession,
        StaffUser,
        token,
        idle_seconds=STAFF_IDLE_SECONDS,
        absolute_seconds=STAFF_ABSOLUTE_SECONDS,
        extra_columns=_SESSION_METHOD,
    )
    return row if row is not None and row.active else None


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
    end_console_visits_after_commit(session, [session_id])
    record(
        session,
        AuditAction.STAFF_SESSION_REVOKE,
        actor=actor,
        target=("staff", staff_id),
        detail={"session": session_id},
    )
    return True


def end_staff_sessions(
    session: Session, staff_id: int, *, except_session: int | None = None
) -> int:
    """End every session of the member (but `except_session`) and their visits; how many."""
    query = select(StaffSession.id).where(StaffSession.staff_id == staff_id)
    if except_session is not None:
        query = query.where(StaffSession.id != except_session)
    ids = list(session.scalars(query))
    if ids:
        session.execute(delete(StaffSession).where(StaffSession.id.in_(ids)))
        end_console_visits_after_commit(session, ids)
    return len(ids)


def end_console_visits_after_commit(session: Session, session_ids: list[int]) -> None:
    """Drop the Redis records of the tenant visits these console sessions started."""
    on_commit(
        session,
        lambda: [staff_access.end_console_visits(queues.redis, i) for i in session_ids],
    )


def end_tenant_visits_after_commit(session: Session, staff_id: int) -> None:
    """A staff member's open tenant-site visits carry their old role: end them with the change."""
    on_commit(session, lambda: staff_access.end_staff_visits(queues.redis, staff_id))
