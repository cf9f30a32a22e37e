"""Tenant lifecycle services: validation, provisioning, limits, domains, status, purge (T1, T2, T6)."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from portal.compliance.audit import Actor
from portal.compliance.models import PlatformAuditEntry
from portal.db import db
from portal.tenancy import services
from portal.tenancy.models import Tenant
from tests.conftest import purge, unique_slug

ACTOR = Actor.system("test")


def last_entry(tenant_id):
    with db.platform_scope() as session:
        return session.scalars(
            select(PlatformAuditEntry)
            .where(PlatformAuditEntry.target_id == str(tenant_id))
            .order_by(PlatformAuditEntry.seq.desc())
        ).first()


def schema_exists(schema):
    with db.platform_scope() as session:
        return bool(
            session.execute(
                text("SELECT 1 FROM pg_namespace WHERE nspname = :s"),
                {"s": schema},
            ).first()
        )


def role_exists(role):
    with db.platform_scope() as session:
        return bool(
            session.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
        )


@pytest.mark.parametrize(
    "slug, message",
    [
        ("ab", "3 to 40"),
        ("a" * 41, "3 to 40"),
        ("Acme", "lower-case"),
        ("acme_co", "lower-case"),
        ("-acme", "lower-case"),
        ("acme-", "lower-case"),
        ("ac--me", "lower-case"),
        ("acme co", "lower-case"),
        ("platform", "reserved"),
        ("public", "reserved"),
        ("www", "reserved"),
    ],
)
def test_bad_slugs_are_refused_with_a_clear_message(slug, message):
    with pytest.raises(services.TenancyError, match=message):
        services.validate_slug(slug)


@pytest.mark.parametrize("domain", ["not a domain", "acme", "x.localhost", "localhost", "a..b.com"])
def test_bad_domains_are_refused(domain):
    with pytest.raises(services.TenancyError):
        services.validate_domain(domain, "localhost")


def test_create_tenant_provisions_schema_role_and_writes_audit_entry(tenant):
    assert schema_exists(tenant.schema)
    assert role_exists(tenant.schema)
    entry = last_entry(tenant.id)
    assert entry.action == "tenancy:tenant:create"
    assert entry.detail["slug"] == tenant.slug


def test_duplicate_slug_and_domain_are_clear_errors(make_tenant):
    first = make_tenant(domains=["dup.example.com"])
    with pytest.raises(services.TenancyError, match="already exists"):
        make_tenant(slug=first.slug)
    with pytest.raises(services.TenancyError, match="already used"):
        make_tenant(domains=["dup.example.com"])


def test_failed_provisioning_leaves_no_tenant_row_behind(app):
    slug = unique_slug()
    with db.owner_engine.begin() as conn:  # DDL: the owner role
        conn.execute(text(f'CREATE SCHEMA "tenant_{slug.replace("-", "_")}"'))
    try:
        with pytest.raises(Exception, match="already exists"):
            with db.platform_scope() as session:
                services.create_tenant(
                    session, slug=slug, name="Half", actor=ACTOR, base_domain="localhost"
                )
        with db.platform_scope() as session:
            assert session.scalars(select(Tenant).where(Tenant.slug == slug)).first() is None
    finally:
        purge(slug)


def test_update_limits_records_before_and_after_and_skips_no_op(tenant):
    with db.platform_scope() as session:
        t = session.get(Tenant, tenant.id)
        assert services.update_limits(session, t, actor=ACTOR, max_users=5, max_storage_bytes=None)
    entry = last_entry(tenant.id)
    assert entry.action == "tenancy:tenant:update"
    assert entry.detail == {
        "slug": tenant.slug,
        "before": {"max_users": None},
        "after": {"max_users": 5},
    }
    with db.platform_scope() as session:
        t = session.get(Tenant, tenant.id)
        assert not services.update_limits(session, t, actor=ACTOR, max_users=5)
    assert last_entry(tenant.id).seq == entry.seq


def test_negative_limit_is_refused(tenant):
    with db.platform_scope() as session:
        with pytest.raises(services.TenancyError, match="0 or more"):
            services.update_limits(
                session, session.get(Tenant, tenant.id), actor=ACTOR, max_users=-1
            )


def test_suspend_needs_a_reason_and_records_it(tenant):
    with db.platform_scope() as session:
        t = session.get(Tenant, tenant.id)
        with pytest.raises(services.TenancyError, match="why"):
            services.suspend_tenant(session, t, actor=ACTOR, reason="  ")
        assert services.suspend_tenant(session, t, actor=ACTOR, reason="unpaid invoice")
        assert not services.suspend_tenant(session, t, actor=ACTOR, reason="again")
    entry = last_entry(tenant.id)
    assert entry.action == "tenancy:tenant:suspend"
    assert entry.detail["reason"] == "unpaid invoice"
    with db.platform_scope() as session:
        t = session.get(Tenant, tenant.id)
        assert services.resume_tenant(session, t, actor=ACTOR)
        assert t.status == "active"
    assert last_entry(tenant.id).action == "tenancy:tenant:resume"


def test_delete_is_soft_and_restore_brings_it_back(tenant):
    with db.platform_scope() as session:
        t = session.get(Tenant, tenant.id)
        services.delete_tenant(session, t, actor=ACTOR, grace_days=30)
        assert t.status == "deleted"
        assert t.purge_after > datetime.now(UTC) + timedelta(days=29)
    assert schema_exists(tenant.schema)
    with db.platform_scope() as session:
        t = session.get(Tenant, tenant.id)
        with pytest.raises(services.TenancyError, match="grace period"):
            services.purge_tenant(session, t, actor=ACTOR)
        assert services.restore_tenant(session, t, actor=ACTOR)
        assert t.status == "active"


def test_purge_job_drops_schema_and_role_of_tenants_past_their_grace_period(app, tenant):
    from jobs.tenancy import purge_deleted_tenants

    with db.platform_scope() as session:
        t = session.get(Tenant, tenant.id)
        services.delete_tenant(session, t, actor=ACTOR, grace_days=0)
        t.purge_after = datetime.now(UTC) - timedelta(seconds=1)
    assert tenant.slug in purge_deleted_tenants()
    assert not schema_exists(tenant.schema)
    assert not role_exists(tenant.schema)
    entry = last_entry(tenant.id)
    assert entry.action == "tenancy:tenant:purge"


def test_purge_job_runs_on_a_real_forking_rq_worker(app, tenant, urls):
    """The work horse is a forked child: it must open its own database connections."""
    from rq import Worker

    from jobs.tenancy import purge_deleted_tenants
    from portal.queue import queues

    with db.platform_scope() as session:
        t = session.get(Tenant, tenant.id)
        services.delete_tenant(session, t, actor=ACTOR, grace_days=0)
        t.purge_after = datetime.now(UTC) - timedelta(seconds=1)
    queue = queues.get("default")
    job = queue.enqueue(purge_deleted_tenants)
    Worker([queue], connection=queues.redis).work(burst=True)
    job.refresh()
    assert job.get_status() == "finished", job.latest_result()
    assert tenant.slug in job.return_value()
    assert not schema_exists(tenant.schema)


def test_add_and_remove_domain_are_audited(tenant):
    with db.platform_scope() as session:
        t = session.get(Tenant, tenant.id)
        services.add_domain(session, t, "Portal.Example.ORG", actor=ACTOR, base_domain="localhost")
        assert [d.domain for d in t.domains] == ["portal.example.org"]
    assert last_entry(tenant.id).detail == {"slug": tenant.slug, "domain": "portal.example.org"}
    with db.platform_scope() as session:
        t = session.get(Tenant, tenant.id)
        assert services.remove_domain(session, t, "portal.example.org", actor=ACTOR)
        assert t.domains == []
    assert last_entry(tenant.id).action == "tenancy:domain:remove"
