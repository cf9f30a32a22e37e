"""The audit trail as CSV, for both trails (the platform's and a tenant's): the same columns,
streamed in ~64 KB chunks from a server-side cursor so memory stays flat at any size."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime

from flask import Response
from sqlalchemy import Select
from sqlalchemy.orm import Session

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


def response(
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


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
