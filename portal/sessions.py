"""Server-side sign-in sessions, shared by staff (platform) and tenant users (tenant schema).

The browser's cookie carries a random token; the database keeps only its SHA-256, with the
time it was created and last seen. Signing in always makes a new token, so a cookie captured
before sign-in is worthless after it, and deleting the row signs the browser out for good.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

LAST_SEEN_RESOLUTION = 60  # seconds; saves a write on every request


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(
    session: Session,
    model,
    *,
    owner_field: str,
    owner_id: int,
    client_addr: str | None,
    user_agent: str | None,
) -> tuple[str, object]:
    token = secrets.token_urlsafe(32)
    row = model(
        token_hash=token_hash(token),
        client_addr=client_addr,
        user_agent=(user_agent or "")[:500],
        **{owner_field: owner_id},
    )
    session.add(row)
    session.flush()
    return token, row


def load(session: Session, model, token: str, *, idle_seconds: int, absolute_seconds: int):
    """The live session row for `token`, or None (expired rows are deleted)."""
    row = session.scalars(select(model).where(model.token_hash == token_hash(token))).first()
    if row is None:
        return None
    now = datetime.now(UTC)
    if (now - row.last_seen_at).total_seconds() > idle_seconds or (
        now - row.created_at
    ).total_seconds() > absolute_seconds:
        session.execute(delete(model).where(model.id == row.id))
        return None
    if (now - row.last_seen_at).total_seconds() > LAST_SEEN_RESOLUTION:
        row.last_seen_at = now
    return row


def end(session: Session, model, token: str):
    """Delete the session for `token`; returns the deleted row (or None)."""
    row = session.scalars(select(model).where(model.token_hash == token_hash(token))).first()
    if row is not None:
        session.execute(delete(model).where(model.id == row.id))
    return row
