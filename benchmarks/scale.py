"""The portal with many tenants: tenant migrations across all of them, and page latency.

1. With 3 bench tenants, the p95 latency of a tenant's signed-in home page (`/` on
   `<slug>.localhost`, Flask test client, a tenant user signed in through the real sign-in
   form with CSRF on) is measured: the reference.
2. Tenants are provisioned up to N (default 1000) with `create_tenant`, in batches of one
   transaction each.
3. A temporary Alembic revision (a nullable column `bench_note` on `users`, down_revision = the
   tenant head) is written to a temporary folder; a ScriptDirectory with both the real
   versions folder and that one is passed to `migrate_tenants(jobs=4, script=...)`. Timed: the
   full migration of all N schemas (target < 60 s), then a no-op run over all N (< 5 s).
4. The same page's p95 latency with N tenants; the ratio to step 1 (target ≤ 1.2).

Every bench tenant is dropped at the end, also on failure. Never asserts a timing.

    .venv/bin/python benchmarks/scale.py [--tenants 1000] [--jobs 4] [--requests 1000]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import _common as common

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')

REVISION = '''\
"""Benchmark only: a nullable column on users (written and deleted by benchmarks/scale.py)."""

import sqlalchemy as sa
from alembic import op

revision = {revision!r}
down_revision = {down_revision!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No schema named: the runner sets search_path to the tenant's schema.
    op.add_column("users", sa.Column("bench_note", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "bench_note")
'''


class TenantUser:
    """A test client signed in as a user of one tenant, through the real sign-in form."""

    def __init__(self, app, slug: str):
        self.slug = slug
        self.host = f"{slug}.{common.BASE_DOMAIN}"
        self.email = f"user@{slug}.example"
        self.client = app.test_client()

    def create(self) -> None:
        from portal.accounts.lifecycle import create_user
        from portal.db import db
        from portal.tenancy.models import Tenant

        with db.platform_scope() as session:
            from sqlalchemy import select

            tenant = session.scalars(select(Tenant).where(Tenant.slug == self.slug)).one()
        with db.tenant_scope(tenant) as session:
            create_user(
                session,
                email=self.email,
                name="Bench User",
                password=common.PASSWORD,
                actor=common.actor(),
            )

    def sign_in(self) -> None:
        page = self.client.get("/sign-in", headers={"Host": self.host})
        match = CSRF_RE.search(page.get_data(as_text=True))
        if page.status_code != 200 or not match:
            common.fail(f"sign-in page of {self.host}: HTTP {page.status_code}, no csrf_token")
        response = self.client.post(
            "/sign-in",
            data={"email": self.email, "password": common.PASSWORD, "csrf_token": match.group(1)},
            headers={"Host": self.host},
        )
        if response.status_code != 303:
            common.fail(f"sign-in to {self.host}: HTTP {response.status_code}")

    def ensure_signed_in(self) -> None:
        response = self.client.get("/", headers={"Host": self.host})
        if response.status_code != 200:
            self.sign_in()

    def get_home(self) -> float:
        started = time.perf_counter()
        response = self.client.get("/", headers={"Host": self.host})
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            common.fail(f"GET / on {self.host}: HTTP {response.status_code}")
        return elapsed


def page_latencies(users: list[TenantUser], requests: int, warmup: int) -> list[float]:
    for i in range(warmup):
        users[i % len(users)].get_home()
    return [users[i % len(users)].get_home() for i in range(requests)]


def block_p95(latencies: list[float], blocks: int = 5) -> float:
    size = max(1, len(latencies) // blocks)
    return common.median(
        [common.percentile(latencies[i : i + size], 95) for i in range(0, size * blocks, size)]
    )


def bench_script(folder: Path):
    from alembic.script import ScriptDirectory

    from portal.tenancy.migrations import MIGRATIONS, head_revision

    head = head_revision("tenant")
    revision = f"bench_{common.run_id()}"
    (folder / f"{revision}_bench_note.py").write_text(
        REVISION.format(revision=revision, down_revision=head)
    )
    tree = MIGRATIONS / "tenant"
    return ScriptDirectory(
        str(tree), version_locations=[str(tree / "versions"), str(folder)]
    ), revision


def timed_migrate(script, jobs: int, label: str, slugs: list[str]):
    total = len(slugs)
    from portal.tenancy.migrations import migrate_tenants

    done = 0

    def progress(slug, error, behind):
        nonlocal done
        done += 1
        common.progress_line(f"{label}: {done}/{behind} schemas", done, behind, done - 1)

    started = time.perf_counter()
    # Only the bench tenants: the bench revision must never reach a tenant of anyone else.
    report = migrate_tenants(jobs=jobs, script=script, slugs=slugs, on_progress=progress)
    elapsed = time.perf_counter() - started
    if report.failed:
        first = next(iter(report.failed.items()))
        common.fail(f"{label}: {len(report.failed)} schemas failed, e.g. {first[0]}: {first[1]}")
    if report.total != total:
        common.fail(f"{label}: saw {report.total} tenants, expected {total}")
    return elapsed, report


def settle() -> None:
    """VACUUM ANALYZE the database (catalogs included), CHECKPOINT, and let the server rest."""
    from portal.db import db

    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM (ANALYZE)")
        conn.exec_driver_sql("CHECKPOINT")
    time.sleep(3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=1000, help="N, tenants in all (>= 4)")
    parser.add_argument("--jobs", type=int, default=4, help="migrate_tenants(jobs=...)")
    parser.add_argument(
        "--batch", type=int, default=25, help="tenants per provisioning transaction"
    )
    parser.add_argument("--requests", type=int, default=1000, help="timed page requests per phase")
    parser.add_argument("--warmup", type=int, default=50, help="untimed page requests first")
    args = parser.parse_args()
    if args.tenants < 4:
        parser.error("--tenants must be at least 4")

    url = common.database_url()
    run = common.run_id()
    slugs = [f"bench-s-{run}-{i:05d}" for i in range(args.tenants)]
    created: list[str] = []
    try:
        app = common.create_app(url)
        common.drop_leftovers()
        print(f"scale benchmark on {common.describe(url)}, N = {args.tenants}")
        print(f"machine: {common.machine()}")
        others = other_tenants()
        if others:
            print(f"note: the bench database also holds {others} non-bench tenant(s)")

        # 1. Reference: 3 tenants.
        first = slugs[:3]
        created.extend(first)
        common.create_tenants(first)
        users = [TenantUser(app, slug) for slug in first]
        for user in users:
            user.create()
            user.sign_in()
        settle()
        small = page_latencies(users, args.requests, args.warmup)
        print(
            f"tenant home page with 3 tenants: p95 {common.percentile(small, 95) * 1000:.2f} ms, "
            f"median {common.median(small) * 1000:.2f} ms ({args.requests} requests)"
        )

        # 2. Up to N tenants.
        rest = slugs[3:]
        created.extend(rest)
        started = time.perf_counter()
        common.create_tenants(rest, batch=args.batch, progress="provisioning")
        elapsed = time.perf_counter() - started
        print(
            f"provisioned {len(rest)} tenants in {elapsed:.1f} s "
            f"({elapsed / len(rest) * 1000:.1f} ms per tenant, batches of {args.batch})"
        )

        # 3. Migrations over all N.
        with tempfile.TemporaryDirectory(prefix="bench-revision-") as folder:
            script, revision = bench_script(Path(folder))
            full, report = timed_migrate(script, args.jobs, "full migration", slugs)
            print(
                f"migrate_tenants(jobs={args.jobs}), one-column revision {revision}: "
                f"{full:.2f} s for {len(report.migrated)} schemas "
                f"({full / max(1, len(report.migrated)) * 1000:.1f} ms each; "
                f"target < 60 s: {common.verdict(full < 60)})"
            )
            noop, report = timed_migrate(script, args.jobs, "no-op migration", slugs)
            print(
                f"migrate_tenants(jobs={args.jobs}), nothing to do: {noop:.2f} s over "
                f"{report.total} tenants, {report.up_to_date} at head "
                f"(target < 5 s: {common.verdict(noop < 5)})"
            )

        # 4. The same page with N tenants, measured in steady state: after a thousand DDL
        # transactions the catalogs are bloated and autovacuum and the checkpointer are busy
        # for a while, which is the aftermath of provisioning, not the cost of N tenants.
        settle()
        for user in users:
            user.ensure_signed_in()  # the session may have idled out during provisioning
        large = page_latencies(users, args.requests, args.warmup)
        p95_small = common.percentile(small, 95)
        p95_large = common.percentile(large, 95)
        print(
            f"tenant home page with {args.tenants} tenants: p95 {p95_large * 1000:.2f} ms, "
            f"median {common.median(large) * 1000:.2f} ms ({args.requests} requests)"
        )
        ratio = p95_large / p95_small
        print(
            f"p95 ratio {args.tenants} tenants / 3 tenants: {ratio:.2f}  "
            f"(target <= 1.2: {common.verdict(ratio <= 1.2)})"
        )
        # A burst of other work on the machine moves one p95 a lot; the median of the p95s of
        # five consecutive blocks moves less. Printed to tell noise from a real change.
        steady = block_p95(large) / block_p95(small)
        print(
            f"noise check: median of 5 block p95s, {args.tenants} / 3 tenants: {steady:.2f}; "
            f"median ratio {common.median(large) / common.median(small):.2f}"
        )
        print(f"machine at the end: {common.machine()}")
        print(
            f"summary: full migrate {full:.2f} s / 60 s = {full / 60:.2f}, "
            f"no-op migrate {noop:.2f} s / 5 s = {noop / 5:.2f}, page p95 ratio {ratio:.2f}"
        )
    finally:
        print(f"cleaning up {len(created)} bench tenants...", flush=True)
        try:
            common.drop_tenants(created)
        finally:
            common.shutdown()


def other_tenants() -> int:
    """Tenants that are not bench tenants (they would count towards N's effects)."""
    from sqlalchemy import func, select

    from portal.db import db
    from portal.tenancy.models import Tenant

    with db.platform_scope() as session:
        return session.scalar(
            select(func.count()).where(~Tenant.slug.startswith(common.BENCH_PREFIX))
        )


if __name__ == "__main__":
    main()
