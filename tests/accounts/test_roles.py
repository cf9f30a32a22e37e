"""portal.accounts.roles: role changes audited, a user's roles, the last-admin guard, and
removed permissions taking effect on the next request (the rights rules: test_escalation.py)."""

from __future__ import annotations

import pytest

from portal.accounts import lifecycle, roles
from portal.accounts.models import UserStatus
from portal.accounts.validation import AccountError
from portal.compliance.audit import AuditAction
from portal.db import db
from tests.accounts.support import (
    ADMIN_PERMISSIONS,
    SYSTEM,
    entries,
    make,
)
from tests.conftest import PASSWORD

# ---- a user's roles --------------------------------------------------------------------------


def test_set_user_roles_audits_before_and_after(tenant):
    with db.tenant_scope(tenant) as session:
        user = make(session, "ann@example.com")
        assert roles.set_user_roles(session, user, ["compliance_officer"], actor=SYSTEM)
        assert not roles.set_user_roles(session, user, ["compliance_officer"], actor=SYSTEM)
        [entry] = entries(session, AuditAction.USER_ROLES_CHANGE, user.id)
    assert entry.detail == {"before": [], "after": ["compliance_officer"]}


# ---- the last administrator ---------------------------------------------------------------


def test_the_last_admin_cannot_be_suspended_deleted_or_demoted(tenant):
    with db.tenant_scope(tenant) as session:
        admin = make(session, "admin@example.com", ["tenant_admin"])
        for change in (
            lambda: lifecycle.suspend_user(session, admin, actor=SYSTEM),
            lambda: lifecycle.delete_user(session, admin, actor=SYSTEM),
            lambda: roles.set_user_roles(session, admin, [], actor=SYSTEM),
        ):
            with pytest.raises(AccountError, match="without an administrator"):
                change()
        assert admin.status == UserStatus.ACTIVE
        assert roles.user_role_keys(session, admin.id) == ["tenant_admin"]
        second = make(session, "second@example.com", ["tenant_admin"])
        assert lifecycle.suspend_user(session, admin, actor=SYSTEM)
        with pytest.raises(AccountError, match="without an administrator"):
            lifecycle.delete_user(session, second, actor=SYSTEM)


def test_a_custom_role_with_admin_powers_counts_for_the_guard(tenant):
    with db.tenant_scope(tenant) as session:
        role = roles.create_role(
            session,
            name="Owners",
            permissions=[*ADMIN_PERMISSIONS, "accounts:role:view"],
            actor=SYSTEM,
        )
        make(session, "owner@example.com", [role.key])
        with pytest.raises(AccountError, match="without an administrator"):
            roles.update_role(
                session,
                role,
                name="Owners",
                description="",
                permissions=["accounts:user:view"],
                actor=SYSTEM,
            )
        with pytest.raises(AccountError, match="without an administrator"):
            roles.delete_role(session, role, actor=SYSTEM)
        assert not entries(session, AuditAction.ROLE_UPDATE)
        assert not entries(session, AuditAction.ROLE_DELETE)


# ---- roles --------------------------------------------------------------------------------


def test_role_create_update_delete_are_audited(tenant):
    with db.tenant_scope(tenant) as session:
        role = roles.create_role(
            session, name="Help desk", permissions=["auth:mfa:reset"], actor=SYSTEM
        )
        assert roles.update_role(
            session, role, name="Service desk", description="x", permissions=[], actor=SYSTEM
        )
        assert not roles.update_role(
            session, role, name="Service desk", description="x", permissions=[], actor=SYSTEM
        )
        roles.delete_role(session, role, actor=SYSTEM)
        created, updated, deleted = (
            entries(session, action)
            for action in (
                AuditAction.ROLE_CREATE,
                AuditAction.ROLE_UPDATE,
                AuditAction.ROLE_DELETE,
            )
        )
    assert [e.target_id for e in created + updated + deleted] == ["help_desk"] * 3
    assert updated[0].detail["before"]["permissions"] == ["auth:mfa:reset"]


def test_role_permission_removal_takes_effect_on_the_next_request(app, tenant):
    with db.tenant_scope(tenant) as session:
        role = roles.create_role(
            session, name="Viewers", permissions=["accounts:user:view"], actor=SYSTEM
        )
        user = make(session, "viewer@example.com", [role.key])
        assert "accounts:user:view" in roles.permissions_for(session, user.id)
    browser = app.test_client()
    headers = {"Host": f"{tenant.slug}.localhost"}
    signed_in = browser.post(
        "/sign-in", data={"email": user.email, "password": PASSWORD}, headers=headers
    )
    assert signed_in.status_code == 303
    assert browser.get("/users", headers=headers).status_code == 200
    with db.tenant_scope(tenant) as session:
        role = session.merge(role)
        roles.update_role(
            session, role, name="Viewers", description="", permissions=[], actor=SYSTEM
        )
        assert roles.permissions_for(session, user.id) == frozenset()
    assert browser.get("/users", headers=headers).status_code == 403
