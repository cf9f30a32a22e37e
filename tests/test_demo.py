"""The demo seed: each demo tenant's people, their roles, MFA and sign-in history; run twice, the
second run creates nothing. Tried on a fresh tenant, since the demo slugs are fixed."""

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from portal import crypto
from portal.accounts.models import BackupCode, Device, Role, User, UserRole, UserSession
from portal.accounts.roles import permissions_for
from portal.auth.services import TOTP_PURPOSE
from portal.compliance.audit import AuditAction, verify_chain
from portal.compliance.models import TenantAuditEntry
from portal.db import db
from portal.demo import DEMO_PASSWORD, HELPDESK_KEY, demo_people, seed_tenant_people
from portal.passwords import verify_password
from portal.permissions import Permission


def _count(session, model, *where):
    return session.scalar(select(func.count()).select_from(model).where(*where))


def test_demo_people_are_the_same_on_every_run():
    assert demo_people("acme") == demo_people("acme")
    assert demo_people("acme") != demo_people("globex")
    people = demo_people("acme")
    assert len(people) == 53 and len({p.email for p in people}) == 53
    assert [p.email for p in people[:3]] == [
        "admin@acme.example",
        "compliance@acme.example",
        "alex@acme.example",
    ]


def test_seed_tenant_people_creates_admins_members_roles_and_history(make_tenant):
    tenant = make_tenant()
    started = time.monotonic()
    with db.tenant_scope(tenant) as session:
        created = seed_tenant_people(session, tenant)
    assert time.monotonic() - started < 10
    assert created == 53
    now = datetime.now(UTC)
    with db.tenant_scope(tenant) as session:
        users = {u.email: u for u in session.scalars(select(User))}
        assert len(users) == 53
        admin = users[f"admin@{tenant.slug}.example"]
        compliance = users[f"compliance@{tenant.slug}.example"]
        alex = users[f"alex@{tenant.slug}.example"]
        for person in (admin, compliance, alex):
            assert person.status == "active" and not person.mfa_enabled
            assert verify_password(person.password_hash, DEMO_PASSWORD)
        assert Permission.USERS_MANAGE in permissions_for(session, admin.id)
        assert Permission.AUDIT_VIEW in permissions_for(session, compliance.id)

        members = [
            u for e, u in users.items() if e not in (admin.email, compliance.email, alex.email)
        ]
        statuses = [u.status for u in members]
        assert statuses.count("active") >= 35
        assert statuses.count("invited") >= 3 and statuses.count("suspended") >= 2
        assert 1 <= statuses.count("deleted") <= 2
        # Members share one hash of the demo password; the invited have none yet.
        hashes = {u.password_hash for u in members if u.status != "invited"}
        assert len(hashes) == 1 and verify_password(hashes.pop(), DEMO_PASSWORD)
        assert all(u.password_hash is None for u in members if u.status == "invited")

        helpdesk = session.scalars(select(Role).where(Role.key == HELPDESK_KEY)).one()
        assert set(helpdesk.permissions) == {Permission.USERS_VIEW, Permission.SESSIONS_REVOKE}
        assert 2 <= _count(session, UserRole, UserRole.role_key == HELPDESK_KEY) <= 6

        with_mfa = [u for u in members if u.mfa_enabled]
        assert 0.3 <= len(with_mfa) / len(members) <= 0.5
        assert not any(u.mfa_enabled for u in members if u.status == "invited")
        for user in with_mfa:
            assert len(crypto.unseal(user.mfa_secret, purpose=TOTP_PURPOSE)) == 32
            assert _count(session, BackupCode, BackupCode.user_id == user.id) == 10

        signed_in = [u for u in users.values() if u.last_sign_in_at is not None]
        assert len(signed_in) >= 35
        assert all(now - u.last_sign_in_at <= timedelta(days=60) for u in signed_in)
        assert all(u.sign_in_count > 0 and u.last_sign_in_addr for u in signed_in)
        assert _count(session, Device) >= len(signed_in)
        assert _count(session, UserSession) >= 3
        # Suspending and deleting ended those people's sessions.
        gone = [u.id for u in members if u.status in ("suspended", "deleted")]
        assert _count(session, UserSession, UserSession.user_id.in_(gone)) == 0
        assert _count(
            session, TenantAuditEntry, TenantAuditEntry.action == AuditAction.USER_SIGN_IN
        ) >= len(signed_in)
        assert verify_chain(session).ok


def test_seed_tenant_people_twice_creates_nothing_more(make_tenant):
    tenant = make_tenant()
    with db.tenant_scope(tenant) as session:
        assert seed_tenant_people(session, tenant, members=10) == 13
    with db.tenant_scope(tenant) as session:
        entries = _count(session, TenantAuditEntry)
    with db.tenant_scope(tenant) as session:
        assert seed_tenant_people(session, tenant, members=10) == 0
    with db.tenant_scope(tenant) as session:
        assert _count(session, User) == 13
        assert _count(session, Role) <= 1
        assert _count(session, TenantAuditEntry) == entries


def test_seed_tenant_people_adds_only_the_missing_people(make_tenant):
    tenant = make_tenant()
    alex = f"alex@{tenant.slug}.example"
    from portal.accounts.lifecycle import create_user
    from portal.compliance.audit import Actor

    with db.tenant_scope(tenant) as session:
        create_user(session, email=alex, name="Alex Morgan", actor=Actor.system("test"))
    with db.tenant_scope(tenant) as session:
        assert seed_tenant_people(session, tenant, members=5) == 7
        assert _count(session, User, func.lower(User.email) == alex) == 1
