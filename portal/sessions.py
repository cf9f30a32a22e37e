"""Server-side sign-in sessions, shared by staff (platform) and tenant users (tenant schema).

The browser's cookie carries a random token; the database keeps only its SHA-256, with the
time it was created and last seen. Signing in always makes a new token, so a cookie captured
before sign-in is worthless after it, and deleting the row signs the browser out for good.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from functools import lru_cache

from sqlalchemy import Select, bindparam, delete, select, update
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


def load(
    session: Session,
    model,
    owner_model,
    token: str,
    *,
    idle_seconds: int,
    absolute_seconds: int,
    extra_columns: tuple = (),
):
    """The live session for `token` with its owner's columns, as one plain row, or None
    (an expired session is deleted). Read on every request, so it is a single Core query,
    built once (`extra_columns` is a module-level tuple) and run on the session's connection:
    `row.session_id`, the owner's columns (`row.id`, `row.email`, ...) and `extra_columns`."""
    query = _load_query(model, owner_model, extra_columns)
    row = session.connection().execute(query, {"token_hash": token_hash(token)}).first()
    if row is None:
        return None
    now = datetime.now(UTC)
    idle = (now - row.session_last_seen_at).total_seconds()
    if idle > idle_seconds or (now - row.session_created_at).total_seconds() > absolute_seconds:
        session.execute(delete(model).where(model.id == row.session_id))
        return None
    if idle > LAST_SEEN_RESOLUTION:
        session.execute(update(model).where(model.id == row.session_id).values(last_seen_at=now))
    return row


@lru_cache(maxsize=16)
def _load_query(model, owner_model, extra_columns: tuple) -> Select:
    sessions, owners = model.__table__, owner_model.__table__
    return (
        select(
            sessions.c.id.label("session_id"),
            sessions.c.created_at.label("session_created_at"),
            sessions.c.last_seen_at.label("session_last_seen_at"),
            # Not the derived ones (the users' search vector): nothing reads them here.
            *(c for c in owners.columns if c.computed is None),
            *extra_columns,
        )
        .join_from(sessions, owners)
        .where(sessions.c.token_hash == bindparam("token_hash"))
    )


def end(session: Session, model, token: str):
    """Delete the session for `token`; returns the deleted row (or None)."""
    row = session.scalars(select(model).where(model.token_hash == token_hash(token))).first()
    if row is not None:
        session.execute(delete(model).where(model.id == row.id))
    return row
