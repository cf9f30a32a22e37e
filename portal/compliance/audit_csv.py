"""The audit trail as CSV, for both trails (the platform's and a tenant's): the same columns,
streamed in ~64 KB chunks from a server-side cursor so memory stays flat at any size.

`export` is the one way to take a trail out: it records AUDIT_EXPORT (with the filters) in the
caller's transaction, which the door commits before the body streams; the rows then stream
from a transaction of their own, opened by `scope`, since the request's has ended."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime

from flask import Response
from sqlalchemy import Select, and_, select, true
from sqlalchemy.orm import Session

from portal.compliance.audit import Actor, AuditAction, record

COLUMNS = (
    "seq",
    "occurred_at",
    "action",
    "actor_type",
    "actor_id",
    "actor_label",
    "target_type",
    "target_id",
    "request_id",
    "client_addr",
    "detail",
    "prev_hash",
    "hash",
)
# A spreadsheet runs a cell that starts with one of these as a formula; labels and ids can hold
# text a visitor typed (a failed sign-in's email), so such cells get a leading apostrophe.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value):
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def row(entry) -> list:
    values = []
    for column in COLUMNS:
        value = getattr(entry, column)
        if column == "detail":
            value = json.dumps(value, sort_keys=True, ensure_ascii=False)
        elif column == "occurred_at":
            value = value.isoformat()
        values.append(cell(value))
    return values


def _response(
    query: Select, scope: Callable[[], AbstractContextManager[Session]], filename: str
) -> Response:
    """`query`'s entries (oldest first is the caller's order) as a streamed CSV download; the
    rows are read in `scope()`, a transaction of their own, since the request's has ended."""
    query = query.execution_options(yield_per=1000)

    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(COLUMNS)
        with scope() as session:
            for entry in session.scalars(query):
                writer.writerow(row(entry))
                if buffer.tell() > 64_000:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
        yield buffer.getvalue()

    return Response(
        generate(),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


def export(
    session: Session,
    model: type,
    conditions: list,
    *,
    actor: Actor,
    filters: dict[str, str],
    scope: Callable[[], AbstractContextManager[Session]],
    filename: str,
) -> Response:
    """The entries of `model`'s trail matching `conditions`, oldest first, as a streamed CSV
    download; the export itself is recorded first, with `filters` as its detail."""
    record(session, AuditAction.AUDIT_EXPORT, actor=actor, detail=filters)
    query = select(model).where(and_(true(), *conditions)).order_by(model.seq)
    return _response(query, scope, filename)


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
