"""Privilege escalation through the tenant site's pages, tried and refused (issue 11 §1, A10):
each test signs in as someone with less than a tenant admin, performs the attack through the
real view, and asserts a clear refusal on the page (422), nothing changed, and that the page
did not offer it in the first place."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.accounts import lifecycle, roles
from portal.accounts.models import Role, User, UserStatus
from portal.auth import services as auth
from portal.db import db
from portal.mail_models import OutboxMessage
from tests.site.support import SYSTEM, body, host, htmx, open_tenant, user_row

VIEW = "accounts:user:view"
MANAGE = "accounts:user:manage"
ROLES_VIEW = "accounts:role:view"
ROLES_MANAGE = "accounts:role:manage"
SECURITY = "auth:settings:manage"
REVOKE = "auth:session:revoke"
MFA_RESET = "auth:mfa:reset"
AUDIT = "compliance:audit:view"


def make_role(tenant, name, permissions) -> str:
    with db.tenant_scope(tenant) as session:
        return roles.create_role(
            session, name=name, permissions=list(permissions), actor=SYSTEM
        ).key


def roles_of(tenant, user_id) -> list[str]:
    with db.tenant_scope(tenant) as session:
        return roles.user_role_keys(session, user_id)


def role_row(tenant, key) -> Role:
    with db.tenant_scope(tenant) as session:
        return session.scalars(select(Role).where(Role.key == key)).one()


def checkbox(page: str, value: str) -> str:
    """The <input> tag of the checkbox with `value`."""
    return re.search(rf'<input[^>]*value="{re.escape(value)}"[^>]*>', page).group(0)


@pytest.fixture
def helpdesk(tenant, site_user, sign_in_site):
    """The attacker of the issue: a user whose role holds user view and manage (plus session
    revoke and MFA reset) and nothing else, signed in. Also a tenant admin and a member."""
    key = make_role(tenant, "Help desk", [VIEW, MANAGE, REVOKE, MFA_RESET])
    admin = site_user(tenant, ["tenant_admin"], email=f"admin-{tenant.slug}@example.com")
    member = site_user(tenant, email=f"member-{tenant.slug}@example.com")
    manager = sign_in_site(
        tenant, site_user(tenant, [key], email=f"desk-{tenant.slug}@example.com")
    )
    return {"key": key, "admin": admin, "member": member, "manager": manager}


# ---- granting roles --------------------------------------------------------------------------


def test_a_user_manager_cannot_make_themself_tenant_admin_and_reach_security(
    client, tenant, helpdesk
):
    me = helpdesk["manager"]
    response = client.post(
        f"/users/{me.id}/roles",
        data={"roles": [helpdesk["key"], "tenant_admin"]},
        headers=host(tenant),
    )
    assert response.status_code == 422
    assert "You cannot give the role Tenant admin: it has permissions you do not hold" in body(
        response
    )
    assert roles_of(tenant, me.id) == [helpdesk["key"]]
    assert client.get("/settings/security", headers=host(tenant)).status_code == 403


def test_the_refusal_comes_back_in_the_roles_block_for_htmx(client, tenant, helpdesk):
    response = client.post(
        f"/users/{helpdesk['member'].id}/roles",
        data={"roles": ["tenant_admin"]},
        headers=htmx(tenant),
    )
    assert response.status_code == 422
    page = body(response)
    assert page.lstrip().startswith('<section class="card mt-3" id="roles"')
    assert "You cannot give the role Tenant admin" in page
    assert roles_of(tenant, helpdesk["member"].id) == []


def test_the_user_page_offers_only_roles_you_may_give(client, tenant, helpdesk):
    page = body(client.get(f"/users/{helpdesk['member'].id}", headers=host(tenant)))
    assert "disabled" in checkbox(page, "tenant_admin")
    assert "disabled" in checkbox(page, "compliance_officer")
    assert "disabled" not in checkbox(page, helpdesk["key"])
    assert "You cannot give this role: it has permissions you do not hold." in page


def test_inviting_someone_as_tenant_admin_is_refused(client, tenant, helpdesk):
    form = client.get("/users/invite", headers=host(tenant))
    assert "disabled" in checkbox(body(form), "tenant_admin")
    response = client.post(
        "/users/invite",
        data={"email": "accomplice@example.com", "roles": ["tenant_admin"]},
        headers=host(tenant),
    )
    assert response.status_code == 422
    assert "You cannot give the role Tenant admin" in body(response)
    with db.tenant_scope(tenant) as session:
        assert lifecycle.find_user(session, "accomplice@example.com") is None
    with db.platform_scope() as session:
        assert not session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.to_addr == "accomplice@example.com",
                OutboxMessage.tenant_slug == tenant.slug,
            )
        ).all()


def test_bulk_assigning_tenant_admin_is_refused_and_not_offered(client, tenant, helpdesk):
    page = body(client.get("/users", headers=host(tenant)))
    bulk_roles = re.search(r'id="bulk-role".*?</select>', page, re.S).group(0)
    assert 'value="tenant_admin"' not in bulk_roles and f'value="{helpdesk["key"]}"' in bulk_roles
    ids = [helpdesk["manager"].id, helpdesk["member"].id]
    response = client.post(
        "/users/bulk",
        data={"action": "assign_role", "role": "tenant_admin", "ids": ids},
        headers=host(tenant),
    )
    assert response.status_code == 422
    assert "You cannot give the role Tenant admin" in body(response)
    assert roles_of(tenant, helpdesk["manager"].id) == [helpdesk["key"]]
    assert roles_of(tenant, helpdesk["member"].id) == []


def test_bulk_suspend_reports_the_tenant_admin_refused_and_suspends_the_others(
    client, tenant, helpdesk
):
    admin, member = helpdesk["admin"], helpdesk["member"]
    response = client.post(
        "/users/bulk",
        data={"action": "suspend", "ids": [admin.id, member.id], "confirmed": "yes"},
        headers=htmx(tenant),
    )
    assert response.status_code == 200
    page = body(response)
    assert "1 user not changed" in page and admin.email in page
    assert "You cannot suspend this user: they hold permissions you do not" in page
    assert user_row(tenant, admin.id).status == UserStatus.ACTIVE
    assert user_row(tenant, member.id).status == UserStatus.SUSPENDED


# ---- acting on a user who holds more ---------------------------------------------------------


def test_changing_a_tenant_admins_email_is_refused_so_forgot_password_cannot_take_over(
    client, tenant, helpdesk
):
    admin = helpdesk["admin"]
    attacker = f"attacker-{tenant.slug}@evil.example"
    response = client.post(
        f"/users/{admin.id}/profile",
        data={"name": "", "email": attacker},
        headers=host(tenant),
    )
    assert response.status_code == 422
    assert "You cannot change the profile of this user: they hold permissions you do not" in body(
        response
    )
    assert user_row(tenant, admin.id).email == admin.email
    # The takeover's second step finds no account at the attacker's address.
    other = client.application.test_client()
    other.post("/forgot-password", data={"email": attacker}, headers=host(tenant))
    with db.platform_scope() as session:
        assert not session.scalars(
            select(OutboxMessage).where(OutboxMessage.to_addr == attacker)
        ).all()


def test_the_page_of_a_tenant_admin_offers_a_user_manager_no_changes(client, tenant, helpdesk):
    admin = helpdesk["admin"]
    with db.tenant_scope(tenant) as session:
        auth.start_user_session(
            session, session.get(User, admin.id), actor=SYSTEM, user_agent="x", device_token=None
        )
    page = body(client.get(f"/users/{admin.id}", headers=host(tenant)))
    assert "they hold permissions you do not" in page
    for offered in ("Save profile", "Save roles", "Suspend…", "Delete…", ">Revoke", ">Forget<"):
        assert offered not in page, offered


@pytest.fixture
def admin_with_session(tenant, helpdesk):
    """The tenant admin with MFA on, a session and a device; returns (admin, session id,
    device id)."""
    with db.tenant_scope(tenant) as session:
        admin = session.get(User, helpdesk["admin"].id)
        admin.mfa_secret, admin.mfa_enabled_at = "sealed", admin.created_at
        started = auth.start_user_session(
            session, admin, actor=SYSTEM, user_agent="Firefox/1", device_token=None
        )
        return helpdesk["admin"], started.row.id, started.row.device_id


@pytest.mark.parametrize(
    "path, data, message",
    [
        ("/users/{id}/suspend", {"reason": "bye"}, "You cannot suspend this user"),
        ("/users/{id}/delete", {}, "You cannot delete this user"),
        ("/users/{id}/mfa/reset", {}, "You cannot reset two-factor authentication of this user"),
        ("/users/{id}/sessions/revoke", {}, "You cannot sign out this user"),
        ("/users/{id}/sessions/{session}/revoke", {}, "You cannot sign out this user"),
        ("/users/{id}/devices/{device}/forget", {}, "You cannot sign out this user"),
    ],
    ids=["suspend", "delete", "reset-mfa", "revoke-all", "revoke-one", "forget-device"],
)
def test_a_user_manager_cannot_act_on_a_tenant_admin(
    client, tenant, admin_with_session, path, data, message
):
    admin, session_id, device_id = admin_with_session
    url = path.format(id=admin.id, session=session_id, device=device_id)
    for headers in (host(tenant), htmx(tenant)):
        response = client.post(url, data=data, headers=headers)
        assert response.status_code == 422
        assert message in body(response)
    with db.tenant_scope(tenant) as session:
        row = session.get(User, admin.id)
        assert row.status == UserStatus.ACTIVE and row.mfa_enabled
        assert auth.user_sessions(session, admin.id) and auth.user_devices(session, admin.id)


def test_a_user_manager_cannot_reactivate_a_suspended_tenant_admin(client, tenant, helpdesk):
    second = helpdesk["admin"]
    with db.tenant_scope(tenant) as session:
        lifecycle.create_user(
            session,
            email=f"boss-{tenant.slug}@example.com",
            role_keys=["tenant_admin"],
            password="correct horse battery staple",
            actor=SYSTEM,
        )
        lifecycle.suspend_user(session, session.get(User, second.id), actor=SYSTEM)
    response = client.post(f"/users/{second.id}/reactivate", headers=host(tenant))
    assert response.status_code == 422
    assert "You cannot reactivate this user" in body(response)
    assert user_row(tenant, second.id).status == UserStatus.SUSPENDED


def test_a_user_manager_still_manages_members(client, tenant, helpdesk):
    member = helpdesk["member"]
    response = client.post(
        f"/users/{member.id}/profile",
        data={"name": "Mem Ber", "email": f"member2-{tenant.slug}@example.com"},
        headers=host(tenant),
    )
    assert response.status_code == 303
    response = client.post(
        f"/users/{member.id}/suspend", data={"reason": "x"}, headers=host(tenant)
    )
    assert response.status_code == 303
    assert user_row(tenant, member.id).status == UserStatus.SUSPENDED


# ---- roles -----------------------------------------------------------------------------------


@pytest.fixture
def role_manager(tenant, site_user, sign_in_site):
    """A role manager (users and roles, not security or the audit trail), signed in; and two
    other roles: Viewers (within their permissions) and Auditors (beyond them)."""
    site_user(tenant, ["tenant_admin"])
    keys = {
        "own": make_role(tenant, "Role managers", [VIEW, MANAGE, ROLES_VIEW, ROLES_MANAGE]),
        "viewers": make_role(tenant, "Viewers", [VIEW]),
        "auditors": make_role(tenant, "Auditors", [AUDIT]),
    }
    sign_in_site(tenant, site_user(tenant, [keys["own"]]))
    return keys


def test_a_role_manager_cannot_widen_the_role_they_hold(client, tenant, role_manager):
    key = role_manager["own"]
    page = body(client.get(f"/roles/{key}", headers=host(tenant)))
    assert "You hold the role Role managers, so someone else must change it." in page
    assert "Save role" not in page and "Delete Role managers" not in page
    response = client.post(
        f"/roles/{key}",
        data={
            "name": "Role managers",
            "permissions": [VIEW, MANAGE, ROLES_VIEW, ROLES_MANAGE, SECURITY],
        },
        headers=host(tenant),
    )
    assert response.status_code == 422
    assert "You hold the role Role managers, so someone else must change it." in body(response)
    assert SECURITY not in role_row(tenant, key).permissions
    assert client.get("/settings/security", headers=host(tenant)).status_code == 403


def test_a_role_manager_cannot_add_a_permission_they_lack_to_another_role(
    client, tenant, role_manager
):
    key = role_manager["viewers"]
    page = body(client.get(f"/roles/{key}", headers=host(tenant)))
    assert "disabled" in checkbox(page, SECURITY) and "disabled" not in checkbox(page, MANAGE)
    response = client.post(
        f"/roles/{key}",
        data={"name": "Viewers", "permissions": [VIEW, SECURITY]},
        headers=host(tenant),
    )
    assert response.status_code == 422
    assert "You cannot give a role permissions you do not hold (auth:settings:manage)." in body(
        response
    )
    assert role_row(tenant, key).permissions == [VIEW]


def test_a_role_manager_cannot_create_a_role_with_a_permission_they_lack(
    client, tenant, role_manager
):
    page = body(client.get("/roles/new", headers=host(tenant)))
    assert "disabled" in checkbox(page, SECURITY) and "disabled" in checkbox(page, AUDIT)
    response = client.post(
        "/roles/new",
        data={"name": "Escape hatch", "permissions": [VIEW, SECURITY]},
        headers=host(tenant),
    )
    assert response.status_code == 422
    assert "You cannot give a role permissions you do not hold" in body(response)
    with db.tenant_scope(tenant) as session:
        assert not session.scalars(select(Role).where(Role.name == "Escape hatch")).all()


def test_a_role_manager_cannot_change_or_delete_a_role_holding_more(client, tenant, role_manager):
    key = role_manager["auditors"]
    page = body(client.get(f"/roles/{key}", headers=host(tenant)))
    assert "The role Auditors has permissions you do not hold" in page and "Save role" not in page
    response = client.post(
        f"/roles/{key}", data={"name": "Auditors", "permissions": []}, headers=host(tenant)
    )
    assert response.status_code == 422
    assert "The role Auditors has permissions you do not hold" in body(response)
    response = client.post(f"/roles/{key}/delete", headers=host(tenant))
    assert response.status_code == 422
    assert "The role Auditors has permissions you do not hold" in body(response)
    assert role_row(tenant, key).permissions == [AUDIT]


# ---- staff visits ----------------------------------------------------------------------------


def test_a_support_visit_cannot_grant_roles_or_change_roles(client, tenant, site_user, sign_in_as):
    member = site_user(tenant)
    key = make_role(tenant, "Viewers", [VIEW])
    sign_in_as("support")
    open_tenant(client, tenant)
    assert client.get("/users", headers=host(tenant)).status_code == 200
    attempts = [
        (f"/users/{member.id}/roles", {"roles": ["tenant_admin"]}),
        ("/users/bulk", {"action": "assign_role", "role": "tenant_admin", "ids": [member.id]}),
        ("/users/invite", {"email": "staffpal@example.com", "roles": ["tenant_admin"]}),
        ("/roles/new", {"name": "Mine", "permissions": [SECURITY]}),
        (f"/roles/{key}", {"name": "Viewers", "permissions": [VIEW, SECURITY]}),
    ]
    for path, data in attempts:
        assert client.post(path, data=data, headers=host(tenant)).status_code == 403, path
    assert roles_of(tenant, member.id) == []
    assert role_row(tenant, key).permissions == [VIEW]


def test_a_platform_admin_visit_acts_with_every_tenant_permission(
    client, tenant, site_user, sign_in_as
):
    member = site_user(tenant)
    sign_in_as("platform_admin")
    open_tenant(client, tenant)
    response = client.post(
        f"/users/{member.id}/roles", data={"roles": ["tenant_admin"]}, headers=host(tenant)
    )
    assert response.status_code == 303
    assert roles_of(tenant, member.id) == ["tenant_admin"]


# ---- the Sessions page -----------------------------------------------------------------------


def test_the_sessions_page_refuses_to_revoke_a_tenant_admins_session(
    client, tenant, helpdesk, admin_with_session
):
    admin, admin_session, _ = admin_with_session
    with db.tenant_scope(tenant) as session:
        member = session.get(User, helpdesk["member"].id)
        member_session = auth.start_user_session(
            session, member, actor=SYSTEM, user_agent="x", device_token=None
        ).row.id
    response = client.post(f"/sessions/{admin_session}/revoke", headers=host(tenant))
    assert response.status_code == 422
    assert "You cannot sign out this user" in body(response)
    response = client.post(
        "/sessions/revoke",
        data={"ids": [admin_session, member_session], "confirmed": "yes"},
        headers=htmx(tenant),
    )
    assert response.status_code == 200
    assert "1 session revoked; 1 refused" in response.headers["HX-Trigger"]
    with db.tenant_scope(tenant) as session:
        assert [s.id for s in auth.user_sessions(session, admin.id)] == [admin_session]
        assert auth.user_sessions(session, member.id) == []
