"""The runtime database role: requests and jobs run as a role that owns nothing, so an injected
statement cannot alter tables, disable the audit trigger, leave a tenant's role or make roles
and schemas; DDL (migrations, provisioning, purge) runs as the owner (issue 11 §6)."""

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from portal.compliance.audit import Actor
from portal.db import db, runtime_role_name, tenant_schema
from portal.tenancy import services
from portal.tenancy.models import Tenant
from tests.conftest import purge, unique_slug

pytestmark = pytest.mark.usefixtures("app")


def refused(sql: str, *, tenant=None, match: str = "permission denied|must be owner"):
    """Run `sql` as the app runs statements (tenant scope, or platform scope) and expect a
    refusal from the database."""
    scope = db.tenant_scope(tenant) if tenant is not None else db.platform_scope()
    with pytest.raises(DBAPIError, match=match):
        with scope as session:
            for statement in sql.split(";\n"):
                session.execute(text(statement))


def test_the_app_runs_as_a_runtime_role_named_for_its_database(urls):
    assert db.split_roles
    database = make_url(urls["database_owner_url"]).database
    with db.engine.connect() as conn:
        me, superuser, createrole, inherit = conn.execute(
            text(
                "SELECT rolname, rolsuper, rolcreaterole, rolinherit FROM pg_roles "
                "WHERE rolname = current_user"
            )
        ).one()
    assert me == runtime_role_name(database) == db.runtime_role()
    assert not superuser and not createrole and not inherit


def test_the_runtime_role_owns_nothing():
    with db.owner_engine.connect() as conn:
        owned = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM pg_class WHERE relowner = r.oid)"
                " + (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid)"
                " + (SELECT count(*) FROM pg_proc WHERE proowner = r.oid)"
                " + (SELECT count(*) FROM pg_type WHERE typowner = r.oid)"
                " FROM pg_roles r WHERE r.rolname = :role"
            ),
            {"role": db.runtime_role()},
        ).scalar()
    assert owned == 0


def test_runtime_role_cannot_disable_the_platform_audit_trigger():
    refused("ALTER TABLE platform.audit_entries DISABLE TRIGGER audit_entries_append_only")
    refused("ALTER TABLE platform.audit_entries DISABLE TRIGGER ALL")
    refused("DROP TRIGGER audit_entries_append_only ON platform.audit_entries")


def test_runtime_role_cannot_change_or_remove_platform_audit_entries():
    refused("UPDATE platform.audit_entries SET action = 'forged'")
    refused("DELETE FROM platform.audit_entries")
    refused("TRUNCATE platform.audit_entries")


def test_runtime_role_cannot_drop_or_alter_tables(tenant):
    refused("DROP TABLE platform.tenants")
    refused("ALTER TABLE platform.staff_users ADD COLUMN backdoor text")
    refused(f'DROP TABLE "{tenant.schema}".audit_entries', tenant=tenant)
    refused(
        f'ALTER TABLE "{tenant.schema}".audit_entries DISABLE TRIGGER ALL',
        tenant=tenant,
    )


def test_reset_role_inside_a_tenant_scope_reaches_no_other_tenant(make_tenant):
    a, b = make_tenant(), make_tenant()
    refused(f'RESET ROLE;\nSELECT count(*) FROM "{b.schema}".users', tenant=a)
    refused(f'RESET ROLE;\nSELECT count(*) FROM "{a.schema}".audit_entries', tenant=a)
    # Outside any tenant scope the runtime role reaches no tenant's tables either.
    refused(f'SELECT count(*) FROM "{a.schema}".users')


def test_runtime_role_cannot_alter_roles_or_create_schemas_and_roles(tenant):
    refused(f'ALTER ROLE "{tenant.schema}" LOGIN', match="permission denied|must have")
    refused("ALTER ROLE CURRENT_USER SUPERUSER", match="permission denied|must be superuser")
    refused("ALTER ROLE CURRENT_USER CREATEROLE", match="permission denied|must have")
    refused("CREATE SCHEMA injected", match="permission denied")
    refused("CREATE ROLE injected", match="permission denied")
    refused("GRANT pg_read_all_data TO CURRENT_USER", match="permission denied|must have")


def test_tenant_schemas_belong_to_the_owner_and_the_runtime_role_only_joins_their_roles(tenant):
    with db.owner_engine.connect() as conn:
        schema_owner = conn.execute(
            text("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = :s"),
            {"s": tenant.schema},
        ).scalar()
        member = conn.execute(
            text("SELECT pg_has_role(:runtime, :tenant, 'MEMBER')"),
            {"runtime": db.runtime_role(), "tenant": tenant.schema},
        ).scalar()
        owner = conn.execute(text("SELECT current_user")).scalar()
    assert schema_owner == owner != db.runtime_role()
    assert member


def test_tenant_create_and_purge_work_from_the_command_line(run_cli):
    slug = unique_slug("cli")
    schema = tenant_schema(slug)
    try:
        assert run_cli("tenants", "create", "--slug", slug, "--name", "CLI Org").exit_code == 0
        with db.tenant_scope(slug) as session:  # the runtime role enters the new tenant
            assert session.execute(text("SELECT current_user")).scalar() == schema
        assert run_cli("tenants", "delete", slug).exit_code == 0
        assert run_cli("tenants", "purge", slug, "--force").exit_code == 0
        with db.owner_engine.connect() as conn:
            left = conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = :s)"
                    " + (SELECT count(*) FROM pg_roles WHERE rolname = :s)"
                ),
                {"s": schema},
            ).scalar()
        assert left == 0
    finally:
        purge(slug)


def test_a_failed_commit_after_provisioning_takes_the_schema_and_role_back():
    """The owner's DDL commits just before the runtime transaction; if that commit then fails,
    the schema and role are dropped again, so no schema exists without its tenant row."""
    slug = unique_slug("undo")
    schema = tenant_schema(slug)

    def fail_after_owner_commit(session):
        if session.info.get("owner_committed"):
            raise RuntimeError("commit failed")

    event.listen(Session, "before_commit", fail_after_owner_commit)
    try:
        with pytest.raises(RuntimeError, match="commit failed"):
            with db.platform_scope() as session:
                services.create_tenant(
                    session,
                    slug=slug,
                    name="Undone",
                    actor=Actor.system("test"),
                    base_domain="localhost",
                )
    finally:
        event.remove(Session, "before_commit", fail_after_owner_commit)
    try:
        with db.owner_engine.connect() as conn:
            left = conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = :s)"
                    " + (SELECT count(*) FROM pg_roles WHERE rolname = :s)"
                ),
                {"s": schema},
            ).scalar()
        with db.platform_scope() as session:
            row = session.scalars(select(Tenant).where(Tenant.slug == slug)).first()
        assert left == 0 and row is None
    finally:
        purge(slug)


def test_a_refused_provisioning_rolls_the_owner_ddl_back_with_the_request():
    slug = unique_slug("half")
    schema = tenant_schema(slug)
    with pytest.raises(RuntimeError, match="later step failed"):
        with db.platform_scope() as session:
            services.create_tenant(
                session, slug=slug, name="Half", actor=Actor.system("test"), base_domain="localhost"
            )
            raise RuntimeError("later step failed")
    try:
        with db.owner_engine.connect() as conn:
            found = conn.execute(
                text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"), {"s": schema}
            ).scalar()
        assert found == 0
    finally:
        purge(slug)
