"""Provisioning one tenant through the portal vs the same DDL run bare.

Portal: `create_tenant` in a `platform_scope` transaction (row, role, schema, tables, guards,
Alembic stamp, audit entry), timed from opening the scope to its commit.

Reference: the DDL that provisioning sends, captured once with a `before_cursor_execute`
listener while creating a throwaway tenant, then replayed with plain psycopg in one transaction
(statements only, no ORM, no platform row, no audit entry) for a fresh schema name each time.

The two alternate, so drift in the machine's load hits both alike. Prints the median of each
and their ratio (target: portal ≤ 2.0 × bare). Never asserts a timing.

    .venv/bin/python benchmarks/provision.py [-n 30] [--warmup 3]
"""

from __future__ import annotations

import argparse
import time

import _common as common
import psycopg
from sqlalchemy import event


def capture_ddl(slug: str) -> tuple[list[str], int]:
    """Create tenant `slug` with the portal, recording every statement sent.

    Returns the statements that name the tenant's schema (the DDL and the version stamp) and
    the number of all statements sent.
    """
    from portal.db import db, tenant_schema
    from portal.tenancy.services import create_tenant

    schema = tenant_schema(slug)
    sent: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with db.platform_scope() as session:
            create_tenant(
                session,
                slug=slug,
                name="Bench capture",
                actor=common.actor(),
                base_domain="localhost",
            )
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    ddl = []
    for statement, parameters in sent:
        if schema not in statement:
            continue
        if parameters:
            raise RuntimeError(f"captured DDL with parameters, cannot replay: {statement[:80]}")
        ddl.append(statement)
    return ddl, len(sent)


def portal_once(slug: str) -> float:
    from portal.db import db
    from portal.tenancy.services import create_tenant

    started = time.perf_counter()
    with db.platform_scope() as session:
        create_tenant(
            session, slug=slug, name=f"Bench {slug}", actor=common.actor(), base_domain="localhost"
        )
    return time.perf_counter() - started


def bare_once(conn: psycopg.Connection, template: list[str], old: str, new: str) -> float:
    statements = [s.replace(old, new) for s in template]
    started = time.perf_counter()
    with conn.transaction():
        for statement in statements:
            conn.execute(statement)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--samples", type=int, default=30, help="timed tenants per side")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    args = parser.parse_args()

    from portal.db import tenant_schema

    url = common.database_url()
    portal_slugs: list[str] = []
    bare_slugs: list[str] = []
    try:
        common.configure(url)
        common.drop_leftovers()
        print(f"provision benchmark on {common.describe(url)}")
        print(f"machine: {common.machine()}")
        run = common.run_id()
        capture = f"bench-cap-{run}"
        portal_slugs.append(capture)
        template, sent = capture_ddl(capture)
        print(
            f"captured {len(template)} DDL statements for one tenant "
            f"(the portal sends {sent} statements in all)"
        )
        old = tenant_schema(capture)
        portal_times: list[float] = []
        bare_times: list[float] = []
        with psycopg.connect(url, autocommit=True) as conn:
            for i in range(args.warmup + args.samples):
                p_slug = f"bench-prov-{run}-{i:04d}"
                b_slug = f"bench-bare-{run}-{i:04d}"
                portal_slugs.append(p_slug)
                bare_slugs.append(b_slug)
                # Alternate which side goes first.
                if i % 2 == 0:
                    p = portal_once(p_slug)
                    b = bare_once(conn, template, old, tenant_schema(b_slug))
                else:
                    b = bare_once(conn, template, old, tenant_schema(b_slug))
                    p = portal_once(p_slug)
                if i >= args.warmup:
                    portal_times.append(p)
                    bare_times.append(b)
        portal_ms = common.median(portal_times) * 1000
        bare_ms = common.median(bare_times) * 1000
        ratio = portal_ms / bare_ms
        print(f"samples: {args.samples} per side (after {args.warmup} warm-up rounds)")
        print(
            f"portal create_tenant: median {portal_ms:7.2f} ms  "
            f"(p90 {common.percentile(portal_times, 90) * 1000:.2f} ms)"
        )
        print(
            f"bare DDL, psycopg:    median {bare_ms:7.2f} ms  "
            f"(p90 {common.percentile(bare_times, 90) * 1000:.2f} ms)"
        )
        print(f"machine at the end: {common.machine()}")
        print(f"ratio portal/bare: {ratio:.2f}x  (target <= 2.0x: {common.verdict(ratio <= 2.0)})")
    finally:
        print("cleaning up bench tenants...", flush=True)
        try:
            common.drop_tenants(portal_slugs + bare_slugs)
        finally:
            common.shutdown()


if __name__ == "__main__":
    main()
