"""A tenant migration run is recorded in the platform trail by the runner itself, whoever ran
it (the CLI, `portal dev`), and only when it migrated or failed a schema."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from portal.compliance.audit import Actor, AuditAction
from portal.compliance.models import PlatformAuditEntry
from portal.db import db
from portal.tenancy.migrations import head_revision, migrate_tenants, run_tenant_migrations


def run_entries(request_id):
    with db.platform_scope() as session:
        return session.scalars(
            select(PlatformAuditEntry).where(PlatformAuditEntry.request_id == request_id)
        ).all()


def test_a_run_that_migrated_a_schema_is_recorded_with_its_actor(make_tenant):
    tenant = make_tenant()
    with db.owner_engine.begin() as conn:
        run_tenant_migrations(conn, tenant.schema, target="base", downgrade=True)
    actor = Actor("system", None, "cli:test", request_id=uuid.uuid4().hex)
    report = migrate_tenants(actor=actor, jobs=1, slugs=[tenant.slug])
    assert report.migrated == [tenant.slug]
    (entry,) = run_entries(actor.request_id)
    assert entry.action == AuditAction.TENANT_MIGRATE and entry.actor_label == "cli:test"
    assert entry.detail == {"head": head_revision(), "migrated": 1, "failed": []}


def test_a_run_with_nothing_to_do_is_not_recorded(make_tenant):
    tenant = make_tenant()
    actor = Actor("system", None, "cli:test", request_id=uuid.uuid4().hex)
    assert migrate_tenants(actor=actor, jobs=1, slugs=[tenant.slug]).up_to_date == 1
    assert run_entries(actor.request_id) == []
