"""The staff hand-off's services at both ends: each records its trail's entry, and what it puts
in Redis (the grant, the visit) arrives only once its transaction commits."""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from portal.accounts.settings import update_security_settings
from portal.auth import staff_access
from portal.compliance.audit import Actor, AuditAction
from portal.compliance.models import PlatformAuditEntry, TenantAuditEntry
from portal.db import db
from portal.queue import queues

STAFF = SimpleNamespace(id=424242, email="sam@msp.example", name="Sam", role="platform_admin")


def actor() -> Actor:
    return Actor("staff", str(STAFF.id), STAFF.email, request_id=uuid.uuid4().hex)


def visit(tenant, *, mfa: bool) -> staff_access.Visit:
    return staff_access.Visit(
        staff_id=STAFF.id,
        email=STAFF.email,
        name=STAFF.name,
        role=STAFF.role,
        tenant_slug=tenant.slug,
        started_at=time.time(),
        console_session_id=1,
        mfa=mfa,
    )


def entries(session, model, request_id):
    return session.scalars(select(model).where(model.request_id == request_id)).all()


def test_hand_off_records_the_platform_entry_and_grants_after_commit(tenant):
    who = actor()
    with db.platform_scope() as session:
        token = staff_access.hand_off(
            session, queues.redis, tenant, staff=STAFF, console_session_id=1, mfa=True, actor=who
        )
        assert staff_access.take_grant(queues.redis, token, tenant.slug) is None  # not yet
    with db.platform_scope() as session:
        (entry,) = entries(session, PlatformAuditEntry, who.request_id)
    assert (entry.action, entry.target_id) == (AuditAction.STAFF_TENANT_ACCESS, str(tenant.id))
    assert entry.detail == {"role": "platform_admin", "mfa": True}
    granted = staff_access.take_grant(queues.redis, token, tenant.slug)
    assert (granted.staff_id, granted.console_session_id) == (STAFF.id, 1)


def test_a_hand_off_rolled_back_grants_nothing(tenant):
    with pytest.raises(RuntimeError), db.platform_scope() as session:
        token = staff_access.hand_off(
            session,
            queues.redis,
            tenant,
            staff=STAFF,
            console_session_id=1,
            mfa=True,
            actor=actor(),
        )
        raise RuntimeError("failed after the hand-off")
    assert staff_access.take_grant(queues.redis, token, tenant.slug) is None


def test_admit_visit_records_the_tenant_entry_and_starts_the_visit_after_commit(tenant):
    who = actor()
    with db.tenant_scope(tenant) as session:
        token = staff_access.admit_visit(session, queues.redis, visit(tenant, mfa=False), actor=who)
        assert staff_access.load(queues.redis, token, tenant.slug) is None  # not yet
    assert staff_access.load(queues.redis, token, tenant.slug).staff_id == STAFF.id
    with db.tenant_scope(tenant) as session:
        (entry,) = entries(session, TenantAuditEntry, who.request_id)
    assert (entry.action, entry.target_id) == (AuditAction.STAFF_TENANT_ACCESS, tenant.slug)
    assert entry.detail["mfa"] is False and "refused" not in entry.detail
    staff_access.end(queues.redis, token)


def test_admit_visit_refused_by_the_mfa_policy_keeps_its_entry_through_a_rollback(tenant):
    with db.tenant_scope(tenant) as session:
        update_security_settings(session, actor=Actor.system("test"), mfa_policy="everyone")
    who = actor()
    with pytest.raises(RuntimeError), db.tenant_scope(tenant) as session:
        refused = staff_access.admit_visit(
            session, queues.redis, visit(tenant, mfa=False), actor=who
        )
        raise RuntimeError("the door answers 403 and rolls back")
    assert refused is None
    with db.tenant_scope(tenant) as session:
        (entry,) = entries(session, TenantAuditEntry, who.request_id)
    assert entry.detail == {"role": "platform_admin", "mfa": False, "refused": "mfa_required"}
    with db.tenant_scope(tenant) as session:
        token = staff_access.admit_visit(session, queues.redis, visit(tenant, mfa=True), actor=who)
    assert token is not None
    staff_access.end(queues.redis, token)
