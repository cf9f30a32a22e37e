"""The tenant's users list: search, filters, sorts and keyset pages that stay fast at 100k users.

Each sort walks one of the `users` indexes in order, so a page costs an index range scan
however deep it is:
- email, name: (lower(email), id), (lower(name), id); created: (created_at, id); through the
  list machinery (`portal.pagination.ListSpec`) on a plain subquery, which PostgreSQL
  flattens, so the index expressions match.
- last sign-in: `last_sign_in_at` is NULL for people who never signed in, and a NULL never
  compares in a row comparison, so one keyset over (last_sign_in_at, id) would lose them. A
  coalesce() would keep them but matches no index (migrations are settled), so every page
  would sort the whole table. Instead it is a nullable sort: two segments, each an index range
  scan of ix_users_last_sign_in_order, "never" (by id) and the dated rows (by time, id).
  "Never" counts as the oldest sign-in: first when ascending, last when descending.

The search (`q`) is a full-text match of word prefixes over the generated `users.search_vector`
column, through its GIN index (ix_users_search): no contains-search, which no index both
PostgreSQL 15 and the embedded 18 have (no pg_trgm) could serve. See `search_query`.

The total is a separate COUNT over the filtered users only (no joins; skipped when the whole
list fits on its first page), and the roles of a page come from one query for its ids.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, time

from sqlalchemy import String, cast, exists, func, select, true
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.orm import Session

from portal.accounts.models import User, UserRole, UserStatus
from portal.pagination import (
    Filter,
    Listing,
    ListQuery,
    ListSpec,
    choice_filter,
    date_filter,
    text_filter,
)
from portal.permissions import BuiltinRole

PAGE_SIZE = 50
STATUSES = tuple(UserStatus)
LIST_COLUMNS = (
    User.id,
    User.email,
    User.name,
    User.status,
    User.created_at,
    User.deleted_at,
    User.last_sign_in_at,
    User.mfa_enabled_at,
)
USERS = ListSpec(
    filters=(
        text_filter("q", 100),
        choice_filter("status", STATUSES),  # "" = everyone but the deleted; "deleted" = the bin
        Filter("role", lambda raw: raw[:64]),  # a role key, "member" = users without a role
        choice_filter("mfa", ("on", "off")),
        date_filter("signed_in_after"),
        date_filter("signed_in_before"),
    ),
    sorts={
        "email": ("email_key", "id"),
        "name": ("name_key", "id"),
        "created": ("created_at", "id"),
        "last_sign_in": ("last_sign_in_at", "id"),
    },
    default_sort="email",
    size=PAGE_SIZE,
    nullable=frozenset({"last_sign_in"}),
)


def searching(query: ListQuery) -> bool:
    """Whether the list is narrowed by more than which status it shows."""
    return query.narrowed("status") or query.filters["status"] not in ("", UserStatus.DELETED)


def _conditions(filters: Mapping) -> list:
    conditions = []
    if filters["q"]:
        conditions.append(search_condition(filters["q"]))
    if filters["status"] in STATUSES:
        conditions.append(User.status == filters["status"])
    else:
        conditions.append(User.status != UserStatus.DELETED)
    role = filters["role"]
    if role == BuiltinRole.MEMBER:
        conditions.append(~exists().where(UserRole.user_id == User.id))
    elif role:
        conditions.append(exists().where(UserRole.user_id == User.id, UserRole.role_key == role))
    if filters["mfa"] == "on":
        conditions.append(User.mfa_enabled_at.is_not(None))
    elif filters["mfa"] == "off":
        conditions.append(User.mfa_enabled_at.is_(None))
    if filters["signed_in_after"]:
        start = datetime.combine(filters["signed_in_after"], time.min, UTC)
        conditions.append(User.last_sign_in_at >= start)
    if filters["signed_in_before"]:
        end = datetime.combine(filters["signed_in_before"], time.min, UTC)
        conditions.append(User.last_sign_in_at < end)
    return conditions


# ---- search --------------------------------------------------------------------------------

# Cut after these (kept with the piece before) and at these (dropped): the same characters as
# in the column's expression, portal.accounts.models.USER_SEARCH_VECTOR.
_AFTER_KEPT = re.compile(r"(?<=[-._@+'])")
_DROPPED = re.compile(r"[\s(),;:\"]+")
_KEPT = "-._@+'"


def search_query(q: str) -> str | None:
    """The tsquery text for what was typed, or None when it holds nothing to look for.

    Each word (split at white space and ( ) , ; : ") is cut after - . _ @ + ' like the
    lexemes; all its pieces must be lexemes, the last one only as a prefix, and all words must
    match (AND). So "schmidt" finds anna.schmidt@x.example and "Anna Schmidt", "alex@" the
    addresses whose local part (or its last piece) is alex, "x.ex" those at x.example, and
    "anna sch" Anna Schmidt. Lexemes are quoted (quote and backslash escaped), so nothing
    typed is read as tsquery syntax; lower-casing happens in PostgreSQL, as for the column."""
    terms = []
    for word in _DROPPED.split(q):
        pieces = [piece for piece in _AFTER_KEPT.split(word) if piece.strip(_KEPT)]
        if not pieces:
            continue  # only separators ("@", "-"): nothing to look for
        quoted = ["'" + p.replace("\\", "\\\\").replace("'", "''") + "'" for p in pieces]
        quoted[-1] += ":*"
        terms.append(" & ".join(quoted))
    return " & ".join(terms) or None


def search_condition(q: str):
    """Users whose email or name holds every typed word as a word prefix (see search_query),
    served by the GIN index ix_users_search. A search of only separators matches everyone."""
    query = search_query(q)
    if query is None:
        return true()
    return User.search_vector.op("@@")(cast(func.lower(query), TSQUERY))


def list_users(
    session: Session,
    args: Mapping[str, str],
    *,
    url: Callable[..., str] | None = None,
    size: int = PAGE_SIZE,
) -> Listing:
    """One page of the tenant's users (plain rows of LIST_COLUMNS) for the query string `args`
    (q, status, role, mfa, signed_in_after, signed_in_before, sort, after, before), with how
    many match. `sort` is email, name, created or last_sign_in, "-" in front for descending."""
    query = USERS.parse(args)
    listed = (
        select(
            *LIST_COLUMNS,
            # Typed, so a cursor's value is checked against text (lower() is untyped otherwise).
            func.lower(User.email, type_=String).label("email_key"),
            func.lower(User.name, type_=String).label("name_key"),
        )
        .where(*_conditions(query.filters))
        .subquery("listed")
    )
    return USERS.page(session, listed, query, url=url, size=size)


def role_keys_by_user(session: Session, user_ids: list[int]) -> dict[int, list[str]]:
    """Each listed user's role keys, in one query for the whole page."""
    if not user_ids:
        return {}
    keys: dict[int, list[str]] = {}
    for user_id, role_key in session.execute(
        select(UserRole.user_id, UserRole.role_key)
        .where(UserRole.user_id.in_(user_ids))
        .order_by(UserRole.user_id, UserRole.role_key)
    ):
        keys.setdefault(user_id, []).append(role_key)
    return keys
