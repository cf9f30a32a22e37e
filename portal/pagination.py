"""Keyset pagination: pages ordered by (sort column, unique tiebreaker), with opaque cursors.

A cursor holds the sort values of the row it points at, so a page is a single indexed range
scan however deep it is (`WHERE (col, id) > (:v, :i) ORDER BY col, id LIMIT n`), unlike OFFSET.
Tampered or stale cursors are ignored (first page), never an error.
"""

from __future__ import annotations

import base64
import json
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


def _decode(cursor: str | None, width: int) -> tuple | None:
    if not cursor:
        return None
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        values = tuple(datetime.fromisoformat(v["t"]) if isinstance(v, dict) else v for v in raw)
    except (ValueError, TypeError, KeyError):
        return None
    if len(values) != width or not all(isinstance(v, str | int | float | datetime) for v in values):
        return None
    return values


_BIGINT = 2**63


def _fits(values: tuple | None, columns: list[Any]) -> tuple | None:
    """`values` if each one suits its column's type (a tampered cursor holding text for a
    number, or a number out of range, would make PostgreSQL fail), else None: the first page."""
    if values is None:
        return None
    for value, column in zip(values, columns, strict=True):
        try:
            expected = column.type.python_type
        except (AttributeError, NotImplementedError):
            continue
        if expected is int:
            ok = type(value) is int and -_BIGINT <= value < _BIGINT
        elif expected is float:
            ok = type(value) in (int, float)
        elif expected is datetime:
            ok = isinstance(value, datetime)
        else:
            ok = isinstance(value, expected) and not isinstance(value, bool)
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
