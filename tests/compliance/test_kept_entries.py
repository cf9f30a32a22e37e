"""Refusals stay in the audit trail though the refusing request rolls back: entries recorded
with `keep=True` are appended again after the rollback, chained afresh; nothing else is."""

from __future__ import annotations

import uuid

import pytest
from flask import Flask
from sqlalchemy import select

from portal import web
from portal.accounts.lifecycle import create_user
from portal.compliance.audit import Actor, AuditAction, record, verify_chain
from portal.compliance.models import PlatformAuditEntry, TenantAuditEntry
from portal.db import db, scope_tenant
from portal.tenancy import routing
from tests.conftest import PASSWORD

SYSTEM = Actor.system("test")


def trail(session, model, request_id):
    return session.scalars(
        select(model).where(model.request_id == request_id).order_by(model.seq)
    ).all()


def platform_entries(request_id):
    with db.platform_scope() as session:
        return trail(session, PlatformAuditEntry, request_id)


def tenant_entries(tenant, request_id):
    with db.tenant_scope(tenant) as session:
        assert verify_chain(session).ok
        return trail(session, TenantAuditEntry, request_id)


# ---- the sign-in pages of both sites --------------------------------------------------------


def test_a_wrong_password_on_the_tenant_site_leaves_one_entry_and_a_whole_chain(client, tenant):
    email = f"pat-{uuid.uuid4().hex[:8]}@example.com"
    with db.tenant_scope(tenant) as session:
        create_user(session, email=email, name="Pat", password=PASSWORD, actor=SYSTEM)
    request_id = uuid.uuid4().hex
    response = client.post(
        "/sign-in",
        data={"email": email, "password": "not the password"},
        headers={"Host": f"{tenant.slug}.localhost", "X-Request-ID": request_id},
    )
    assert response.status_code == 422
    entries = tenant_entries(tenant, request_id)
    assert [e.action for e in entries] == [AuditAction.USER_SIGN_IN_FAILED]
    assert entries[0].personal == {"email": email}


def test_a_wrong_password_on_the_console_leaves_one_entry_and_a_whole_chain(client, make_staff):
    member = make_staff()
    request_id = uuid.uuid4().hex
    response = client.post(
        "/sign-in",
        data={"email": member.email, "password": "not the password"},
        headers={"Host": "localhost", "X-Request-ID": request_id},
    )
    assert response.status_code == 422
    entries = platform_entries(request_id)
    assert [(e.action, e.target_id) for e in entries] == [
        (AuditAction.STAFF_SIGN_IN_FAILED, str(member.id))
    ]
    with db.platform_scope() as session:
        assert verify_chain(session).ok


# ---- the rule at the door -------------------------------------------------------------------


@pytest.fixture(scope="module")
def door(app):
    """A bare app with the portal's request plumbing and routes that record, then answer."""
    door = Flask(__name__)
    door.config.update(TESTING=True, PROPAGATE_EXCEPTIONS=True)
    web.init_app(door)

    @door.post("/record/<outcome>")
    def record_then(outcome):
        session = web.request_session()
        actor = web.actor_for("system", None, "door test")
        record(session, AuditAction.JOB_RETRY, actor=actor, detail={"kept": False})
        record(session, AuditAction.STAFF_SIGN_IN_FAILED, actor=actor, keep=True)
        if outcome == "error":
            raise RuntimeError("failed mid-way")
        return "", int(outcome)

    @door.post("/refuse")
    def refuse_without_kept_entries():
        record(web.request_session(), AuditAction.JOB_RETRY, actor=web.actor_for("system", 0, ""))
        return "", 403

    return door


def post(door, path, *, tenant=None):
    """POST to the bare app, as the tenant site of `tenant` if given, else as the console."""
    request_id = uuid.uuid4().hex
    environ = {}
    if tenant is not None:
        environ["portal.tenant"] = routing.resolve(f"{tenant.slug}.localhost", "localhost")
    response = door.test_client().post(
        path, headers={"X-Request-ID": request_id}, environ_base=environ
    )
    return response, request_id


def test_a_refusal_keeps_only_its_kept_entry_chained_afresh(door):
    response, request_id = post(door, "/record/422")
    assert response.status_code == 422
    entries = platform_entries(request_id)
    # The rolled-back entry before it took seq n; the kept one now holds it, on a whole chain.
    assert [e.action for e in entries] == [AuditAction.STAFF_SIGN_IN_FAILED]
    with db.platform_scope() as session:
        assert verify_chain(session).ok
        previous = session.scalars(
            select(PlatformAuditEntry).where(PlatformAuditEntry.seq == entries[0].seq - 1)
        ).one()
    assert entries[0].prev_hash == previous.hash


def test_a_refusal_with_no_kept_entry_leaves_none(door):
    response, request_id = post(door, "/refuse")
    assert response.status_code == 403
    assert platform_entries(request_id) == []


def test_a_success_writes_a_kept_entry_once(door):
    response, request_id = post(door, "/record/200")
    assert response.status_code == 200
    actions = [e.action for e in platform_entries(request_id)]
    assert actions == [AuditAction.JOB_RETRY, AuditAction.STAFF_SIGN_IN_FAILED]


def test_an_exception_keeps_the_kept_entry(door):
    with pytest.raises(RuntimeError):
        post(door, "/record/error")  # propagated: the teardown rolls back
    door.config["PROPAGATE_EXCEPTIONS"] = False
    try:
        response, request_id = post(door, "/record/error")  # a 500 page: after_request
    finally:
        door.config["PROPAGATE_EXCEPTIONS"] = True
    assert response.status_code == 500
    assert [e.action for e in platform_entries(request_id)] == [AuditAction.STAFF_SIGN_IN_FAILED]


def test_a_tenant_request_keeps_its_entry_in_the_tenant_trail_under_its_role(door, tenant):
    response, request_id = post(door, "/record/422", tenant=tenant)
    assert response.status_code == 422
    entries = tenant_entries(tenant, request_id)  # the chain is verified there
    assert [e.action for e in entries] == [AuditAction.STAFF_SIGN_IN_FAILED]
    assert platform_entries(request_id) == []


# ---- the scopes of jobs and commands --------------------------------------------------------


def test_a_scope_that_fails_keeps_its_kept_entry(tenant):
    request_id = uuid.uuid4().hex
    actor = Actor("system", None, "scope test", request_id=request_id)
    with pytest.raises(RuntimeError), db.tenant_scope(tenant) as session:
        record(session, AuditAction.MFA_FAILED, actor=actor, keep=True)
        record(session, AuditAction.USER_UPDATE, actor=actor)
        raise RuntimeError("failed mid-way")
    assert [e.action for e in tenant_entries(tenant, request_id)] == [AuditAction.MFA_FAILED]
    with pytest.raises(RuntimeError), db.platform_scope() as session:
        record(session, AuditAction.STAFF_SIGN_IN_FAILED, actor=actor, keep=True)
        raise RuntimeError("failed mid-way")
    assert [e.action for e in platform_entries(request_id)] == [AuditAction.STAFF_SIGN_IN_FAILED]


def test_keeping_an_entry_inside_a_savepoint_is_refused(tenant):
    with db.tenant_scope(tenant) as session, session.begin_nested():
        with pytest.raises(RuntimeError, match="savepoint"):
            record(session, AuditAction.MFA_FAILED, actor=SYSTEM, keep=True)


# ---- the tenant of a scope ------------------------------------------------------------------


def test_scope_tenant_is_the_tenant_the_scope_was_opened_with(tenant):
    with db.tenant_scope(tenant) as session:
        assert scope_tenant(session) is tenant


def test_scope_tenant_fails_loudly_without_one(tenant):
    with db.tenant_scope(tenant.slug) as session, pytest.raises(RuntimeError, match="no tenant"):
        scope_tenant(session)
    with db.platform_scope() as session, pytest.raises(RuntimeError, match="no tenant"):
        scope_tenant(session)
