"""The tenant's users list: search, filters, sorts and keyset pages that stay fast at 100k users.

Each sort walks one of the `users` indexes in order, so a page costs an index range scan
however deep it is:
- email, name: (lower(email), id), (lower(name), id); created: (created_at, id); through
  `portal.pagination.keyset_page` on a plain subquery, which PostgreSQL flattens, so the index
  expressions match.
- last sign-in: `last_sign_in_at` is NULL for people who never signed in, and a NULL never
  compares in a row comparison, so one keyset over (last_sign_in_at, id) would lose them. A
  coalesce() would keep them but matches no index (migrations are settled), so every page
  would sort the whole table. Instead the order is two segments, each an index range scan of
  ix_users_last_sign_in_order: "never" (by id) and the dated rows (by time, id). "Never" counts
  as the oldest sign-in: first when ascending, last when descending. The cursor names its
  segment, so a walk crosses from one into the other without an OFFSET.

The search (`q`) is a full-text match of word prefixes over the generated `users.search_vector`
column, through its GIN index (ix_users_search): no contains-search, which no index both
PostgreSQL 15 and the embedded 18 have (no pg_trgm) could serve. See `search_query`.

The total is a separate COUNT over the filtered users only (no joins; skipped when the whole
list fits on its first page), and the roles of a page come from one query for its ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from sqlalchemy import Select, String, cast, exists, func, select, true, tuple_
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.orm import Session

from portal.accounts.models import User, UserRole, UserStatus
from portal.pagination import Page, _decode, _encode, _fits, keyset_page
from portal.permissions import BuiltinRole

PAGE_SIZE = 50
SORTS = ("email", "name", "created", "last_sign_in")
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


@dataclass(frozen=True)
class UserFilters:
    """The list's query, normalised: what the URL may carry, with junk dropped."""

    q: str = ""
    status: str = ""  # "" = everyone but the deleted; "deleted" = the recycle bin
    role: str = ""  # a role key, "member" = users without a role
    mfa: str = ""  # "on" | "off" | ""
    signed_in_after: date | None = None
    signed_in_before: date | None = None
    sort: str = "email"  # a key of SORTS, "-" in front for descending

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")

    @property
    def sort_key(self) -> str:
        return self.sort.lstrip("-")

    def narrowed(self) -> bool:
        """Whether anything narrows the list (the status default does not)."""
        return bool(self.status) or self.searching()

    def searching(self) -> bool:
        """Whether the list is narrowed by more than which status it shows."""
        return any((self.q, self.role, self.mfa, self.signed_in_after, self.signed_in_before)) or (
            self.status not in ("", UserStatus.DELETED)
        )

    def args(self) -> dict[str, str]:
        """The URL query of these filters, defaults left out."""
        values = {
            "q": self.q,
            "status": self.status,
            "role": self.role,
            "mfa": self.mfa,
            "signed_in_after": self.signed_in_after.isoformat() if self.signed_in_after else "",
            "signed_in_before": self.signed_in_before.isoformat() if self.signed_in_before else "",
            "sort": "" if self.sort == "email" else self.sort,
        }
        return {k: v for k, v in values.items() if v}


def _date(raw: str | None) -> date | None:
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def parse_filters(args) -> UserFilters:
    """Filters from a query string (a mapping with .get); unknown values fall back to defaults."""
    status = (args.get("status") or "").strip()
    mfa = (args.get("mfa") or "").strip()
    sort = (args.get("sort") or "email").strip()
    if sort.lstrip("-") not in SORTS:
        sort = "email"
    return UserFilters(
        q=" ".join((args.get("q") or "").split())[:100],
        status=status if status in STATUSES else "",
        role=(args.get("role") or "").strip()[:64],
        mfa=mfa if mfa in ("on", "off") else "",
        signed_in_after=_date(args.get("signed_in_after")),
        signed_in_before=_date(args.get("signed_in_before")),
        sort=sort,
    )


def _conditions(
    *,
    q: str,
    status: str,
    role: str,
    mfa: str,
    signed_in_after: date | None,
    signed_in_before: date | None,
) -> list:
    conditions = []
    if q:
        conditions.append(search_condition(q))
    if status in STATUSES:
        conditions.append(User.status == status)
    else:
        conditions.append(User.status != UserStatus.DELETED)
    if role == BuiltinRole.MEMBER:
        conditions.append(~exists().where(UserRole.user_id == User.id))
    elif role:
        conditions.append(exists().where(UserRole.user_id == User.id, UserRole.role_key == role))
    if mfa == "on":
        conditions.append(User.mfa_enabled_at.is_not(None))
    elif mfa == "off":
        conditions.append(User.mfa_enabled_at.is_(None))
    if signed_in_after:
        conditions.append(User.last_sign_in_at >= datetime.combine(signed_in_after, time.min, UTC))
    if signed_in_before:
        conditions.append(User.last_sign_in_at < datetime.combine(signed_in_before, time.min, UTC))
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


SORT_EXPRESSIONS = {
    # Typed, so keyset_page checks a cursor's value against text (lower() is untyped otherwise).
    "email": func.lower(User.email, type_=String),
    "name": func.lower(User.name, type_=String),
    "created": User.created_at,
}


def list_users(
    session: Session,
    *,
    q: str = "",
    status: str = "",
    role: str = "",
    mfa: str = "",
    signed_in_after: date | None = None,
    signed_in_before: date | None = None,
    sort: str = "email",
    after: str | None = None,
    before: str | None = None,
    size: int = PAGE_SIZE,
) -> tuple[Page, int]:
    """One page of the tenant's users (plain rows of LIST_COLUMNS) and how many match.

    `sort` is email, name, created or last_sign_in, with "-" in front for descending; the
    cursors come from the previous page (`Page.next_cursor`, `Page.prev_cursor`)."""
    conditions = _conditions(
        q=q,
        status=status,
        role=role,
        mfa=mfa,
        signed_in_after=signed_in_after,
        signed_in_before=signed_in_before,
    )
    descending = sort.startswith("-")
    key = sort.lstrip("-")
    if key not in SORTS:
        key, descending = "email", False
    if key == "last_sign_in":
        page = _last_sign_in_page(
            session, conditions, descending=descending, after=after, before=before, size=size
        )
    else:
        rows = (
            select(*LIST_COLUMNS, SORT_EXPRESSIONS[key].label("sort_value"))
            .where(*conditions)
            .subquery("listed")
        )
        page = keyset_page(
            session,
            select(rows),
            [rows.c.sort_value, rows.c.id],
            descending=descending,
            after=after,
            before=before,
            size=size,
        )
    if not after and not before and page.next_cursor is None:
        total = len(page.rows)  # the whole list fits on its first page
    else:
        total = session.scalar(select(func.count()).select_from(User).where(*conditions))
    return page, total


# ---- last sign-in: two index segments ------------------------------------------------------

NEVER, DATED = "n", "d"


def _segment_query(conditions: list, segment: str) -> tuple[Select, list]:
    if segment == NEVER:
        return select(*LIST_COLUMNS).where(*conditions, User.last_sign_in_at.is_(None)), [User.id]
    return (
        select(*LIST_COLUMNS).where(*conditions, User.last_sign_in_at.is_not(None)),
        [User.last_sign_in_at, User.id],
    )


def _cursor(row) -> str:
    if row.last_sign_in_at is None:
        return f"{NEVER}.{_encode((row.id,))}"
    return f"{DATED}.{_encode((row.last_sign_in_at, row.id))}"


def _parse_cursor(cursor: str | None) -> tuple[str, tuple] | None:
    segment, _, rest = (cursor or "").partition(".")
    if segment not in (NEVER, DATED):
        return None
    # _decode leaves only values PostgreSQL can bind; _fits checks each against its column
    # (an integer id, not a boolean; a time where the segment is dated).
    _query, columns = _segment_query([], segment)
    values = _fits(_decode(rest, len(columns)), columns)
    return None if values is None else (segment, values)


def _last_sign_in_page(
    session: Session,
    conditions: list,
    *,
    descending: bool,
    after: str | None,
    before: str | None,
    size: int,
) -> Page:
    order = [DATED, NEVER] if descending else [NEVER, DATED]  # "never" is the oldest
    back = _parse_cursor(before)
    forward = None if back else _parse_cursor(after)
    start = back or forward
    # Walking backwards flips the segment order and each segment's direction.
    ascending = descending == (back is not None)
    segments = order if back is None else order[::-1]
    if start is not None:
        segments = segments[segments.index(start[0]) :]
    rows: list = []
    for segment in segments:
        query, columns = _segment_query(conditions, segment)
        if start is not None and segment == start[0]:
            key, at = tuple_(*columns), tuple_(*start[1])
            query = query.where(key > at if ascending else key < at)
        ordered = [c.asc() if ascending else c.desc() for c in columns]
        rows += session.execute(query.order_by(*ordered).limit(size + 1 - len(rows))).all()
        if len(rows) > size:
            break
    more = len(rows) > size
    rows = rows[:size]
    if back is not None:
        rows.reverse()
    has_next = more if back is None else True
    has_prev = (more if back is not None else forward is not None) and bool(rows)
    return Page(
        rows=rows,
        next_cursor=_cursor(rows[-1]) if rows and has_next else None,
        prev_cursor=_cursor(rows[0]) if rows and has_prev else None,
    )


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
