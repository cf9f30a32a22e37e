"""Tenant migrations: equal to provisioning, parallel, resumable, skipping schemas at head (T2, T7)."""

import pytest
from sqlalchemy import text

from portal.db import db, tenant_schema
from portal.tenancy.migrations import (
    head_revision,
    migrate_tenants,
    run_tenant_migrations,
    schema_revisions,
)
from portal.tenancy.models import Tenant
from portal.tenancy.services import bootstrap_ddl, provision_schema
from tests.conftest import purge, unique_slug

CATALOG_QUERIES = {
    "columns": """
        SELECT table_name, column_name, data_type, character_maximum_length, is_nullable,
               replace(coalesce(column_default, ''), :schema, 'S') AS column_default
        FROM information_schema.columns WHERE table_schema = :schema""",
    "constraints": """
        SELECT conrelid::regclass::text AS tbl, conname, contype,
               replace(pg_get_constraintdef(oid), :schema, 'S') AS def
        FROM pg_constraint WHERE connamespace = CAST(:schema AS regnamespace)""",
    "indexes": """
        SELECT tablename, indexname, replace(indexdef, :schema, 'S') AS def
        FROM pg_indexes WHERE schemaname = :schema""",
    "triggers": """
        SELECT event_object_table, trigger_name, event_manipulation, action_timing,
               replace(action_statement, :schema, 'S') AS action
        FROM information_schema.triggers WHERE trigger_schema = :schema""",
    "grants": """
        SELECT table_name, privilege_type FROM information_schema.role_table_grants
        WHERE table_schema = :schema AND grantee = :schema""",
    "functions": """
        SELECT proname, replace(prosrc, :schema, 'S') FROM pg_proc
        WHERE pronamespace = CAST(:schema AS regnamespace)""",
    "sequences": """
        SELECT replace(sequence_name, :schema, 'S'), data_type FROM information_schema.sequences
        WHERE sequence_schema = :schema""",
    "default_acl": """
        SELECT defaclobjtype, replace(array_to_string(defaclacl, ','), :schema, 'S')
        FROM pg_default_acl WHERE defaclnamespace = CAST(:schema AS regnamespace)""",
}


def catalog(schema):
    snapshot = {}
    # As the owner: information_schema shows only what the reader holds privileges on.
    with db.owner_engine.connect() as conn:
        for name, query in CATALOG_QUERIES.items():
            rows = conn.execute(text(query), {"schema": schema}).all()
            snapshot[name] = sorted(
                tuple(str(v).replace(f'"{schema}"', "S").replace(schema, "S") for v in row)
                for row in rows
            )
    return snapshot


@pytest.fixture
def bare_schemas(app):
    """Slugs for schemas made in the test (no tenant row), dropped afterwards."""
    slugs = []
    yield slugs
    for slug in slugs:
        purge(slug)


def test_a_migrated_schema_equals_a_provisioned_schema(bare_schemas):
    migrated, provisioned = unique_slug("m"), unique_slug("p")
    bare_schemas += [migrated, provisioned]
    with db.owner_engine.begin() as conn:
        for statement in bootstrap_ddl(tenant_schema(migrated)):
            conn.exec_driver_sql(statement)
        run_tenant_migrations(conn, tenant_schema(migrated))
    with db.platform_scope() as session:
        provision_schema(session, provisioned)
    a, b = catalog(tenant_schema(migrated)), catalog(tenant_schema(provisioned))
    assert a["columns"], "the migrated schema has no tables"
    for part in CATALOG_QUERIES:
        assert a[part] == b[part], part
    with db.owner_engine.connect() as conn:
        revisions = schema_revisions(conn, [tenant_schema(migrated), tenant_schema(provisioned)])
    assert set(revisions.values()) == {head_revision()}


def downgrade_to_base(tenant):
    with db.owner_engine.begin() as conn:
        run_tenant_migrations(conn, tenant.schema, target="base", downgrade=True)


def test_migrate_skips_schemas_at_head(make_tenant):
    tenants = [make_tenant() for _ in range(3)]
    report = migrate_tenants(jobs=2, slugs=[t.slug for t in tenants])
    assert report.total == 3 and report.up_to_date == 3 and not report.migrated and report.ok


def test_migrate_resumes_after_an_injected_failure_in_one_schema(make_tenant):
    first, broken, last = (make_tenant() for _ in range(3))
    for t in (first, broken, last):
        downgrade_to_base(t)
    # The injected failure: a table the migration wants to create.
    with db.owner_engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE TABLE "{broken.schema}".users (id int)')
    slugs = [first.slug, broken.slug, last.slug]

    report = migrate_tenants(jobs=2, slugs=slugs)
    assert sorted(report.migrated) == sorted([first.slug, last.slug])
    assert list(report.failed) == [broken.slug]
    assert "already exists" in report.failed[broken.slug]
    with db.platform_scope() as session:
        row = session.get(Tenant, broken.id)
        assert row.migration_error and row.schema_revision is None
    with db.owner_engine.connect() as conn:
        revisions = schema_revisions(conn, [first.schema, broken.schema, last.schema])
    assert revisions == {
        first.schema: head_revision(),
        broken.schema: None,
        last.schema: head_revision(),
    }

    with db.owner_engine.begin() as conn:
        conn.exec_driver_sql(f'DROP TABLE "{broken.schema}".users')
    again = migrate_tenants(jobs=2, slugs=slugs)
    assert again.migrated == [broken.slug] and again.up_to_date == 2 and again.ok
    with db.platform_scope() as session:
        row = session.get(Tenant, broken.id)
        assert row.migration_error is None and row.schema_revision == head_revision()


def test_canary_failure_stops_before_the_rest(make_tenant):
    canary, *rest = (make_tenant() for _ in range(3))
    for t in (canary, *rest):
        downgrade_to_base(t)
    with db.owner_engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE TABLE "{canary.schema}".users (id int)')
    report = migrate_tenants(jobs=2, canary=1, slugs=[canary.slug] + [t.slug for t in rest])
    assert list(report.failed) == [canary.slug]
    assert sorted(report.not_attempted) == sorted(t.slug for t in rest)
    assert not report.ok


def test_a_schema_less_alter_migration_reaches_every_tenant(make_tenant, tmp_path):
    from alembic.script import ScriptDirectory

    from portal.tenancy.migrations import MIGRATIONS

    tenants = [make_tenant() for _ in range(3)]
    head = head_revision()
    (tmp_path / "0999_note.py").write_text(
        f'''"""Add a note column."""
import sqlalchemy as sa
from alembic import op

revision = "0999test"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("note", sa.Text(), nullable=True))
    op.create_index("ix_users_note", "users", ["note"])


def downgrade():
    op.drop_index("ix_users_note", table_name="users")
    op.drop_column("users", "note")
'''
    )
    script = ScriptDirectory(
        str(MIGRATIONS / "tenant"),
        version_locations=[str(MIGRATIONS / "tenant" / "versions"), str(tmp_path)],
    )
    report = migrate_tenants(jobs=2, slugs=[t.slug for t in tenants], script=script)
    assert report.ok and sorted(report.migrated) == sorted(t.slug for t in tenants)
    with db.owner_engine.connect() as session:  # information_schema shows the owner's tables
        found = (
            session.execute(
                text(
                    "SELECT table_schema FROM information_schema.columns "
                    "WHERE table_name = 'users' AND column_name = 'note' AND table_schema = ANY(:s)"
                ),
                {"s": [t.schema for t in tenants]},
            )
            .scalars()
            .all()
        )
    assert sorted(found) == sorted(t.schema for t in tenants)
    with db.owner_engine.connect() as conn:
        assert set(schema_revisions(conn, [t.schema for t in tenants]).values()) == {"0999test"}


def test_only_one_migration_run_at_a_time(app, run_cli):
    from portal.tenancy.migrations import MIGRATE_LOCK_KEY, MigrationInProgress

    with db.owner_engine.connect() as other:  # another run, holding the lock
        other.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATE_LOCK_KEY})
        try:
            with pytest.raises(MigrationInProgress):
                migrate_tenants(jobs=1)
            result = run_cli("tenants", "migrate")
            assert (
                result.exit_code == 1
                and "another `portal tenants migrate` is running" in result.output
            )
        finally:
            other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATE_LOCK_KEY})
            other.commit()
    assert migrate_tenants(jobs=1).ok
