"""Alembic trees and the tenant migrations runner.

`upgrade_platform` upgrades the platform schema. `migrate_tenants` upgrades tenant schemas in
parallel: it reads every schema's revision in a handful of UNION ALL queries, skips the schemas
already at head without opening an Alembic context for them, migrates the rest each in its own
connection and transaction (so one failure leaves the others untouched), and records the
outcome on the tenant's platform row; a run that migrated or failed anything is recorded in the
platform trail. A failed schema stays behind and is picked up again by the next run.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, select, text, update

from portal.compliance.audit import Actor, AuditAction, record
from portal.db import (
    PLATFORM_SCHEMA,
    TENANT_PLACEHOLDER,
    TenantBase,
    db,
    grant_runtime,
    load_models,
    query_each_schema,
    tenant_schema,
)

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent.parent.parent / "migrations"


def alembic_config(tree: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS / tree))
    return config


@cache
def script_directory(tree: str) -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(tree))


def head_revision(tree: str = "tenant", script: ScriptDirectory | None = None) -> str:
    return (script or script_directory(tree)).get_current_head()


@contextmanager
def connection_for_alembic(config: Config) -> Iterator[Connection]:
    """The connection handed over by the portal, or one opened from the settings (alembic CLI)."""
    connection = config.attributes.get("connection")
    if connection is not None:
        yield connection
        return
    from portal.startup import configure_services

    configure_services(need_redis=False)
    with db.owner_engine.connect() as connection:  # migrations run as the owner role
        yield connection
        connection.commit()


def upgrade_platform() -> None:
    """Bring the platform schema to head (creating it on first run), as the owner role, then
    give the runtime role (when there is one) its privileges on what the upgrade created."""
    load_models()
    with db.owner_engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{PLATFORM_SCHEMA}"'))
        config = alembic_config("platform")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        runtime = db.runtime_role()
        if runtime:
            grant_runtime(connection, runtime)


def run_tenant_migrations(
    connection: Connection,
    schema: str,
    *,
    target: str = "head",
    downgrade: bool = False,
    script: ScriptDirectory | None = None,
) -> None:
    """Run the tenant tree on one schema in the caller's transaction, up (or down) to `target`."""
    script = script or script_directory("tenant")
    # Tables declared against the placeholder schema (op.create_table(..., schema="tenant"))
    # are mapped by the translate map; operations that name no schema (op.add_column("users",
    # ...), as autogenerate writes them for this tree) resolve through search_path.
    connection.exec_driver_sql(f'SET LOCAL search_path TO "{schema}"')
    connection = connection.execution_options(schema_translate_map={TENANT_PLACEHOLDER: schema})

    def steps(rev, context):
        if downgrade:
            return script._downgrade_revs(target, rev)
        return script._upgrade_revs(target, rev)

    config = alembic_config("tenant")
    with EnvironmentContext(config, script, fn=steps, destination_rev=target) as env:
        env.configure(
            connection=connection,
            target_metadata=TenantBase.metadata,
            version_table_schema=schema,
        )
        env.run_migrations()


def schema_revisions(connection: Connection, schemas: list[str]) -> dict[str, str | None]:
    """Each schema's Alembic revision, read in a few UNION ALL queries (None: none recorded)."""
    found: dict[str, str | None] = dict.fromkeys(schemas)
    if not schemas:
        return found
    with_table = (
        connection.execute(
            text(
                "SELECT table_schema FROM information_schema.tables "
                "WHERE table_name = 'alembic_version' AND table_schema = ANY(:schemas)"
            ),
            {"schemas": schemas},
        )
        .scalars()
        .all()
    )
    query = "SELECT version_num FROM {schema}.alembic_version"
    for schema, revision in query_each_schema(connection, list(with_table), query):
        found[schema] = revision
    return found


@dataclass
class MigrationReport:
    head: str
    total: int = 0
    up_to_date: int = 0
    migrated: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    not_attempted: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.not_attempted


# One `tenants migrate` at a time per database (two deploys racing would fight over locks).
MIGRATE_LOCK_KEY = 0x706F7274616C6D67  # "portalmg"


class MigrationInProgress(RuntimeError):
    """Another tenant migration run holds the lock."""


@contextmanager
def _one_run_at_a_time() -> Iterator[None]:
    with db.owner_engine.connect() as conn:
        if not conn.execute(
            text("SELECT pg_try_advisory_lock(:k)"), {"k": MIGRATE_LOCK_KEY}
        ).scalar():
            raise MigrationInProgress(
                "another `portal tenants migrate` is running on this database; "
                "run again when it has finished"
            )
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATE_LOCK_KEY})
            conn.commit()


def migrate_tenants(
    *,
    actor: Actor | None = None,
    jobs: int = 4,
    canary: int = 0,
    slugs: list[str] | None = None,
    script: ScriptDirectory | None = None,
    on_progress: Callable[[str, str | None, int], None] | None = None,
    lock_timeout: str = "5s",
) -> MigrationReport:
    """Upgrade every tenant schema that is behind head, and record the run (`actor`, else the
    system) unless there was nothing to do. See the module docstring."""
    with _one_run_at_a_time():
        report = _migrate_tenants(
            jobs=jobs,
            canary=canary,
            slugs=slugs,
            script=script,
            on_progress=on_progress,
            lock_timeout=lock_timeout,
        )
    if report.migrated or report.failed:
        with db.platform_scope() as session:
            record(
                session,
                AuditAction.TENANT_MIGRATE,
                actor=actor or Actor.system("migrations"),
                detail={
                    "head": report.head,
                    "migrated": len(report.migrated),
                    "failed": sorted(report.failed),
                },
            )
    return report


def _migrate_tenants(*, jobs, canary, slugs, script, on_progress, lock_timeout) -> MigrationReport:
    from portal.tenancy.models import Tenant

    script = script or script_directory("tenant")
    head = head_revision(script=script)
    with db.owner_engine.connect() as connection:
        query = select(Tenant.slug).order_by(Tenant.id)
        if slugs:
            query = query.where(Tenant.slug.in_(slugs))
        all_slugs = list(connection.execute(query).scalars())
        revisions = schema_revisions(connection, [tenant_schema(s) for s in all_slugs])
    behind = [s for s in all_slugs if revisions[tenant_schema(s)] != head]
    report = MigrationReport(
        head=head, total=len(all_slugs), up_to_date=len(all_slugs) - len(behind)
    )

    def run(batch: list[str]) -> None:
        for slug, error in _run_batch(batch, jobs=jobs, script=script, lock_timeout=lock_timeout):
            _record_outcome(slug, head if error is None else revisions[tenant_schema(slug)], error)
            if error:
                report.failed[slug] = error
            else:
                report.migrated.append(slug)
            if on_progress:
                on_progress(slug, error, len(behind))

    first, rest = (behind[:canary], behind[canary:]) if canary else ([], behind)
    if first:
        run(first)
        if report.failed:
            report.not_attempted = rest
            return report
    run(rest)
    return report


# Alembic's `op` and `context` are process-wide proxies, so parallel migrations need processes,
# not threads. Workers are forked: they inherit the configured engine (whose pool the fork hook
# in portal.db discards) and the ScriptDirectory stored here.
_worker_script: ScriptDirectory | None = None


def _migrate_schema(slug: str, lock_timeout: str) -> tuple[str, str | None]:
    schema = tenant_schema(slug)
    try:
        with db.owner_engine.begin() as conn:
            conn.execute(text(f"SET LOCAL lock_timeout = '{lock_timeout}'"))
            run_tenant_migrations(conn, schema, script=_worker_script)
    except Exception as exc:  # one schema's failure must not stop the others
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:500]}"
        log.warning("tenant migration failed", extra={"tenant": slug, "error": error})
        return slug, error
    return slug, None


def _run_batch(batch: list[str], *, jobs: int, script: ScriptDirectory, lock_timeout: str):
    """Yield (slug, error) as each schema finishes; in forked worker processes when jobs > 1."""
    global _worker_script
    _worker_script = script
    if jobs <= 1 or len(batch) <= 1:
        for slug in batch:
            yield _migrate_schema(slug, lock_timeout)
        return
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=min(jobs, len(batch)), mp_context=context) as pool:
        futures = [pool.submit(_migrate_schema, slug, lock_timeout) for slug in batch]
        for future in as_completed(futures):
            yield future.result()


def _record_outcome(slug: str, revision: str | None, error: str | None) -> None:
    from portal.tenancy.models import Tenant

    with db.owner_engine.begin() as conn:
        conn.execute(
            update(Tenant)
            .where(Tenant.slug == slug)
            .values(schema_revision=revision, migration_error=error, migrated_at=datetime.now(UTC))
        )
