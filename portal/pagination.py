"""Keyset pagination: pages ordered by (sort column, unique tiebreaker), with opaque cursors.

A cursor holds the sort values of the row it points at, so a page is a single indexed range
scan however deep it is (`WHERE (col, id) > (:v, :i) ORDER BY col, id LIMIT n`), unlike OFFSET.
Tampered or stale cursors are ignored (first page), never an error.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, tuple_
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Page:
    rows: list
    next_cursor: str | None
    prev_cursor: str | None


def _encode(values: tuple) -> str:
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


def _decode(cursor: str | None, width: int) -> tuple | None:
    """The values of a cursor made by `_encode`, or None if it is not one (tampered, stale or
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
) -> Page:
    """One page of `query` ordered by `columns` (the last one unique), after or before a cursor.

    Rows are the statement's rows (attribute access by column name), or with `entity` the ORM
    objects of a `select(Model)`."""
    key = tuple_(*columns)
    values_of = lambda row: tuple(getattr(row, c.key) for c in columns)  # noqa: E731
    back = _fits(_decode(before, len(columns)), columns)
    forward = None if back else _fits(_decode(after, len(columns)), columns)
    # Walking backwards flips the direction of both the comparison and the order.
    reverse = back is not None
    ascending = descending == reverse
    if back or forward:
        cursor = back or forward
        query = query.where(key > tuple_(*cursor) if ascending else key < tuple_(*cursor))
    order = [c.asc() if ascending else c.desc() for c in columns]
    result = session.execute(query.order_by(*order).limit(size + 1))
    rows = list(result.scalars() if entity else result)
    more = len(rows) > size
    rows = rows[:size]
    if reverse:
        rows.reverse()
    has_next = more if not reverse else True
    has_prev = (more if reverse else forward is not None) and bool(rows)
    return Page(
        rows=rows,
        next_cursor=_encode(values_of(rows[-1])) if rows and has_next else None,
        prev_cursor=_encode(values_of(rows[0])) if rows and has_prev else None,
    )
