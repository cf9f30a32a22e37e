"""Tenant user changes. Runs inside a tenant scope; the accounts area grows from here."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal import sessions
from portal.accounts.models import User, UserSession, UserStatus
from portal.compliance.audit import Actor, AuditAction, record
from portal.db import advisory_key
from portal.passwords import hash_password, verify_password
from portal.validation import InputError

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


class AccountError(InputError):
    """An account change a person can correct."""


class QuotaExceeded(AccountError):
    pass


def count_users(session: Session) -> int:
    return session.scalar(
        select(func.count()).select_from(User).where(User.status != UserStatus.DELETED)
    )


def create_user(
    session: Session,
    *,
    email: str,
    name: str = "",
    password: str | None = None,
    status: str = UserStatus.ACTIVE,
    actor: Actor,
) -> User:
    """Create a user in the session's tenant, never exceeding the tenant's max users.

    The quota check and the insert happen under a transaction-scoped advisory lock per tenant,
    so concurrent creations are serialised and the count seen is the committed one.
    """
    tenant = session.info["tenant"]
    email = (email or "").strip()
    if not EMAIL_RE.match(email) or len(email) > 320:
        raise AccountError("Enter a valid email address.", "email")
    session.execute(
        select(func.pg_advisory_xact_lock(advisory_key(f"users:{session.info['tenant_schema']}")))
    )
    if session.scalar(select(User.id).where(func.lower(User.email) == email.lower())):
        raise AccountError("A user with this email already exists.", "email")
    if tenant.max_users is not None and count_users(session) >= tenant.max_users:
        raise QuotaExceeded(
            f"{tenant.name} has reached its limit of {tenant.max_users} users.", "email"
        )
    user = User(
        email=email,
        name=" ".join(name.split()),
        status=status,
        password_hash=hash_password(password) if password else None,
    )
    session.add(user)
    session.flush()
    record(
        session,
        AuditAction.USER_CREATE,
        actor=actor,
        target=("user", user.id),
        detail={"status": status},
        personal={"email": email, "name": user.name},
    )
    return user


USER_IDLE_SECONDS = 30 * 60
USER_ABSOLUTE_SECONDS = 12 * 60 * 60


def authenticate_user(session: Session, email: str, password: str, *, actor: Actor) -> User | None:
    """The active user with these credentials, or None; unknown emails cost the same Argon2 time."""
    user = session.scalars(
        select(User).where(func.lower(User.email) == (email or "").strip().lower())
    ).first()
    ok = verify_password(user.password_hash if user else None, password or "")
    if not ok or user is None or user.status != UserStatus.ACTIVE:
        record(
            session,
            AuditAction.USER_SIGN_IN_FAILED,
            actor=actor,
            target=("user", user.id) if user else None,
            personal={"email": (email or "")[:320]},
        )
        return None
    return user


def start_user_session(session: Session, user: User, *, actor: Actor, user_agent: str | None):
    token, row = sessions.start(
        session,
        UserSession,
        owner_field="user_id",
        owner_id=user.id,
        client_addr=actor.client_addr,
        user_agent=user_agent,
    )
    user.last_sign_in_at = datetime.now(UTC)
    record(
        session,
        AuditAction.USER_SIGN_IN,
        actor=actor,
        target=("user", user.id),
        detail={"session": row.id},
    )
    return token, row


def end_user_session(session: Session, token: str, *, actor: Actor) -> None:
    row = sessions.end(session, UserSession, token)
    if row is not None:
        record(
            session,
            AuditAction.USER_SIGN_OUT,
            actor=actor,
            target=("user", row.user_id),
            detail={"session": row.id},
        )


def load_user_session(session: Session, token: str):
    """The signed-in user's row (user columns plus `session_id`), or None."""
    row = sessions.load(
        session,
        UserSession,
        User,
        token,
        idle_seconds=USER_IDLE_SECONDS,
        absolute_seconds=USER_ABSOLUTE_SECONDS,
    )
    return row if row is not None and row.status == UserStatus.ACTIVE else None
