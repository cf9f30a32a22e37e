"""The one list machinery: a list's spec (filters, sorts), keyset pages with opaque cursors,
the total, and the links of a page. Every list page uses it; the API will too.

- A `ListSpec` names the query-string filters, each parsed into a normalised value; a value
  that makes no sense is ignored (the default), with a note when the page should say so.
  Sorts name the listed query's columns (the last unique); `-key` sorts descending.
- A cursor holds the sort values of the row it points at, so a page is a single indexed range
  scan however deep it is (`WHERE (col, id) > (:v, :i) ORDER BY col, id LIMIT n`), unlike OFFSET.
  Tampered or stale cursors are ignored (first page), never an error.
- A sort whose first column may be NULL walks two segments, each an index range scan: the NULL
  rows (by the other columns) and the rest. NULL counts as the lowest value, so it comes first
  ascending and last descending; the cursor names its segment.
- No Flask here: a door passes its query string (any mapping with .get) and a URL builder.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import FromClause, Select, func, select, tuple_
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Page:
    rows: list
    next_cursor: str | None
    prev_cursor: str | None


def encode_cursor(values: tuple) -> str:
    """An opaque cursor holding `values` (text, numbers, datetimes)."""
    plain = [{"t": v.isoformat()} if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


MAX_CURSOR = 8192  # characters; the longest cursor we issue (a 320-character email) is ~5,000
_BIGINT = 2**63


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a cursor value")  # NaN, Infinity


def _storable(value: Any) -> bool:
    """Whether PostgreSQL can take `value` as a bound parameter without failing: text without
    NUL or lone surrogates, integers within bigint, finite floats, datetimes."""
    if isinstance(value, bool):
        return False  # a boolean is never a sort key here; `True > 1` would fail in SQL
    if isinstance(value, str):
        if "\x00" in value:
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\\ud800" in the JSON)
            return False
        return True
    if isinstance(value, int):
        return -_BIGINT <= value < _BIGINT
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, datetime)


def decode_cursor(cursor: str | None, width: int) -> tuple | None:
    """The `width` values of a cursor made by `encode_cursor`, or None if it is not one (tampered, stale or
    truncated): every value is then safe to bind, though not yet checked against its column."""
    if not cursor or len(cursor) > MAX_CURSOR:
        return None
    try:
        raw = json.loads(
            base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)),
            parse_constant=_reject_constant,
        )
        if not isinstance(raw, list) or len(raw) != width:
            return None
        values = tuple(datetime.fromisoformat(v["t"]) if isinstance(v, dict) else v for v in raw)
    except (ValueError, TypeError, KeyError, RecursionError):
        # ValueError covers bad base64 (binascii.Error), bad UTF-8 and JSON, and integers with
        # more digits than Python converts; RecursionError, "[[[[…" nested thousands deep.
        return None
    if not all(_storable(v) for v in values):
        return None
    return values


def _fits(values: tuple | None, columns: list[Any]) -> tuple | None:
    """`values` if each one suits its column's type (a tampered cursor holding text for a
    number, or a number out of range, would make PostgreSQL fail), else None: the first page.
    A column of unknown type (a bare SQL function) takes text only."""
    if values is None:
        return None
    for value, column in zip(values, columns, strict=True):
        try:
            expected = column.type.python_type
        except (AttributeError, NotImplementedError):
            expected = str
        if expected is int:
            ok = type(value) is int
        elif expected is float:
            ok = type(value) in (int, float)
        elif expected is datetime:
            ok = isinstance(value, datetime)
        elif expected is str or issubclass(expected, str):
            ok = isinstance(value, str)
        else:
            ok = isinstance(value, expected)
        if not ok:
            return None
    return values


def _values(row, columns: list[Any]) -> tuple:
    return tuple(getattr(row, c.key) for c in columns)


def _run(session: Session, query: Select, entity: bool) -> list:
    result = session.execute(query)
    return list(result.scalars() if entity else result)


def keyset_page(
    session: Session,
    query: Select,
    columns: list[Any],
    *,
    descending: bool = False,
    after: str | None = None,
    before: str | None = None,
    size: int = 25,
    entity: bool = False,
    nullable: bool = False,
) -> Page:
    """One page of `query` ordered by `columns` (the last one unique), after or before a cursor.

    Rows are the statement's rows (attribute access by column name), or with `entity` the ORM
    objects of a `select(Model)`. With `nullable`, the first column may be NULL (see above)."""
    if nullable:
        return _segmented_page(session, query, columns, descending, after, before, size)
    key = tuple_(*columns)
    back = _fits(decode_cursor(before, len(columns)), columns)
    forward = None if back else _fits(decode_cursor(after, len(columns)), columns)
    # Walking backwards flips the direction of both the comparison and the order.
    reverse = back is not None
    ascending = descending == reverse
    if back or forward:
        cursor = back or forward
        query = query.where(key > tuple_(*cursor) if ascending else key < tuple_(*cursor))
    order = [c.asc() if ascending else c.desc() for c in columns]
    rows = _run(session, query.order_by(*order).limit(size + 1), entity)
    more = len(rows) > size
    rows = rows[:size]
    if reverse:
        rows.reverse()
    has_next = more if not reverse else True
    has_prev = (more if reverse else forward is not None) and bool(rows)
    return Page(
        rows=rows,
        next_cursor=encode_cursor(_values(rows[-1], columns)) if rows and has_next else None,
        prev_cursor=encode_cursor(_values(rows[0], columns)) if rows and has_prev else None,
    )


# ---- a sort whose first column may be NULL: two segments ---------------------------------

NULL, NOT_NULL = "n", "d"


def _segment(query: Select, columns: list[Any], segment: str) -> tuple[Select, list[Any]]:
    if segment == NULL:
        return query.where(columns[0].is_(None)), columns[1:]
    return query.where(columns[0].is_not(None)), columns


def _segment_cursor(row, columns: list[Any]) -> str:
    if getattr(row, columns[0].key) is None:
        return f"{NULL}.{encode_cursor(_values(row, columns[1:]))}"
    return f"{NOT_NULL}.{encode_cursor(_values(row, columns))}"


def _parse_segment_cursor(cursor: str | None, columns: list[Any]) -> tuple[str, tuple] | None:
    segment, _, rest = (cursor or "").partition(".")
    if segment not in (NULL, NOT_NULL):
        return None
    keyed = columns[1:] if segment == NULL else columns
    values = _fits(decode_cursor(rest, len(keyed)), keyed)
    return None if values is None else (segment, values)


def _segmented_page(
    session: Session,
    query: Select,
    columns: list[Any],
    descending: bool,
    after: str | None,
    before: str | None,
    size: int,
) -> Page:
    order = [NOT_NULL, NULL] if descending else [NULL, NOT_NULL]  # NULL is the lowest
    back = _parse_segment_cursor(before, columns)
    forward = None if back else _parse_segment_cursor(after, columns)
    start = back or forward
    # Walking backwards flips the segment order and each segment's direction.
    ascending = descending == (back is not None)
    segments = order if back is None else order[::-1]
    if start is not None:
        segments = segments[segments.index(start[0]) :]
    rows: list = []
    for segment in segments:
        segment_query, keyed = _segment(query, columns, segment)
        if start is not None and segment == start[0]:
            key, at = tuple_(*keyed), tuple_(*start[1])
            segment_query = segment_query.where(key > at if ascending else key < at)
        ordered = [c.asc() if ascending else c.desc() for c in keyed]
        rows += session.execute(segment_query.order_by(*ordered).limit(size + 1 - len(rows))).all()
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
        next_cursor=_segment_cursor(rows[-1], columns) if rows and has_next else None,
        prev_cursor=_segment_cursor(rows[0], columns) if rows and has_prev else None,
    )


# ---- list specs: filters, sorts, the page and its links ------------------------------------


class Ignored(ValueError):
    """Raised by a filter's `parse` for a value that makes no sense; its message, if any, is
    shown on the page (the value itself narrows nothing)."""


@dataclass(frozen=True)
class Filter:
    """One query-string parameter: `parse` turns its text (stripped, "" when absent) into the
    normalised value, `default` when it narrows nothing; it raises `Ignored` for junk."""

    name: str
    parse: Callable[[str], Any]
    default: Any = ""


def text_filter(name: str, limit: int) -> Filter:
    """Free text, white space collapsed, cut at `limit` characters."""
    return Filter(name, lambda raw: " ".join(raw.split())[:limit])


def choice_filter(name: str, choices) -> Filter:
    """One of `choices`; anything else narrows nothing."""
    allowed = frozenset(choices)
    return Filter(name, lambda raw: raw if raw in allowed else "")


def date_filter(name: str, note: str | None = None) -> Filter:
    """An ISO date (YYYY-MM-DD); anything else narrows nothing, with `note` on the page."""

    def parse(raw: str) -> date | None:
        if not raw:
            return None
        try:
            return date.fromisoformat(raw[:32])
        except ValueError:
            raise Ignored(note or "") from None

    return Filter(name, parse, None)


@dataclass(frozen=True)
class ListSpec:
    """What a list accepts: its filters, its sorts (name → columns of the listed query, the last
    unique), the default sort, the page size and how the total is counted."""

    filters: tuple[Filter, ...]
    sorts: Mapping[str, tuple[str, ...]]
    default_sort: str
    size: int = 50
    nullable: frozenset[str] = frozenset()  # sorts whose first column may be NULL
    counted: bool = True  # False: no total (a trail too long to count on every page)
    # True: the total is a column of the page's own statement, one round trip (the listed
    # query is then best a CTE, computed once); else a COUNT when more than one page matches.
    total_in_page: bool = False

    def parse(self, args: Mapping[str, str]) -> ListQuery:
        """The normalised query of a query string (a mapping with .get): filters, sort and
        cursors, junk dropped (and noted where a filter says so)."""
        values: dict[str, Any] = {}
        ignored: list[str] = []
        for f in self.filters:
            try:
                values[f.name] = f.parse((args.get(f.name) or "").strip())
            except Ignored as exc:
                values[f.name] = f.default
                if str(exc):
                    ignored.append(str(exc))
        sort = (args.get("sort") or "").strip()
        if sort.removeprefix("-") not in self.sorts:
            sort = self.default_sort
        after, before = (_cursor_text(args.get(name)) for name in ("after", "before"))
        return ListQuery(self, values, sort, after, before, tuple(ignored))

    def page(
        self,
        session: Session,
        listed: FromClause,
        query: ListQuery,
        *,
        statement: Select | None = None,
        url: Callable[..., str] | None = None,
        size: int | None = None,
    ) -> Listing:
        """One page of `listed` (the filtered rows, a subquery or CTE) for `query`, with the
        total. `statement` selects from `listed` when a page needs more columns (default: its
        columns); `url(**args)` builds this list's URL for the links."""
        size = size or self.size
        columns = [listed.c[name] for name in self.sorts[query.sort_key]]
        statement = select(listed) if statement is None else statement
        count = select(func.count()).select_from(listed)
        if self.counted and self.total_in_page:
            statement = statement.add_columns(count.scalar_subquery().label("total"))
        page = keyset_page(
            session,
            statement,
            columns,
            descending=query.descending,
            after=query.after,
            before=query.before,
            size=size,
            nullable=query.sort_key in self.nullable,
        )
        if not self.counted:
            total = None
        elif not query.after and not query.before and page.next_cursor is None:
            total = len(page.rows)  # the whole list fits on its first page
        elif self.total_in_page and page.rows:
            total = page.rows[0].total
        else:  # a count of its own, or a cursor past the end
            total = session.scalar(count)
        return Listing(page.rows, total, page.next_cursor, page.prev_cursor, query, url)


def _cursor_text(raw: str | None) -> str | None:
    """A cursor as given, or None when absent or longer than any we issue."""
    return raw if raw and len(raw) <= MAX_CURSOR else None


@dataclass(frozen=True)
class ListQuery:
    """A list's query, normalised: filter values by name, the sort, the cursors."""

    spec: ListSpec
    filters: dict[str, Any]
    sort: str
    after: str | None = None
    before: str | None = None
    ignored: tuple[str, ...] = ()  # notes on given values that made no sense

    @property
    def sort_key(self) -> str:
        return self.sort.removeprefix("-")

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")

    def narrowed(self, *besides: str) -> bool:
        """Whether a filter (other than those named) narrows the list."""
        return any(
            f.name not in besides and self.filters[f.name] not in (f.default, "", None)
            for f in self.spec.filters
        )

    def with_filters(self, **values: Any) -> ListQuery:
        return replace(self, filters={**self.filters, **values})

    def args(self, **changes: Any) -> dict[str, str]:
        """The URL query of this list with `changes` (a filter, `sort`, `after`, `before`; None
        removes one): defaults and cursors left out unless given."""
        values = {**self.filters, "sort": self.sort, **changes}
        defaults = {f.name: f.default for f in self.spec.filters}
        defaults["sort"] = self.spec.default_sort
        return {
            name: str(value)
            for name, value in values.items()
            if value not in (defaults.get(name), "", None)
        }


@dataclass(frozen=True)
class Listing:
    """One page of a list: its rows, the total (None when not counted), the cursors, the query
    it answers, and the links a page shows, all built by `url` from `args`."""

    rows: list
    total: int | None
    next_cursor: str | None
    prev_cursor: str | None
    query: ListQuery
    link: Callable[..., str] | None = field(default=None, repr=False)

    @property
    def filters(self) -> dict[str, Any]:
        return self.query.filters

    @property
    def sort(self) -> str:
        return self.query.sort

    def args(self, **changes: Any) -> dict[str, str]:
        return self.query.args(**changes)

    def url(self, **changes: Any) -> str:
        """This list's URL with `changes`, as `ListQuery.args`; cursors are dropped."""
        if self.link is None:
            raise ValueError("this listing was made without a URL builder")
        return self.link(**self.args(**changes))

    @property
    def here(self) -> str:
        """The URL of this very page (its filters, sort and cursor)."""
        return self.url(after=self.query.after, before=self.query.before)

    @property
    def next_url(self) -> str | None:
        return self.url(after=self.next_cursor) if self.next_cursor else None

    @property
    def prev_url(self) -> str | None:
        return self.url(before=self.prev_cursor) if self.prev_cursor else None

    def sort_url(self, key: str) -> str:
        """The first page sorted by `key`, flipped to descending if it is already the
        ascending sort."""
        current = self.query.sort_key == key and not self.query.descending
        return self.url(sort=f"-{key}" if current else key)
