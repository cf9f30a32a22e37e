"""The Roles page: built-in roles read-only, tenant-defined roles created, changed, deleted."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.accounts import roles
from portal.accounts.models import Role
from portal.compliance.audit import AuditAction
from portal.db import db
from tests.site.support import SYSTEM, audit_entries, body, host, open_tenant

VIEW = "accounts:user:view"
RESET = "auth:mfa:reset"


def make_role(tenant, name="Help desk", permissions=(VIEW, RESET)) -> str:
    with db.tenant_scope(tenant) as session:
        return roles.create_role(
            session, name=name, permissions=list(permissions), actor=SYSTEM
        ).key


def role_row(tenant, key) -> Role | None:
    with db.tenant_scope(tenant) as session:
        return session.scalars(select(Role).where(Role.key == key)).first()


@pytest.mark.parametrize("path", ["/roles", "/roles/new", "/roles/tenant_admin"])
def test_signed_out_roles_pages_redirect_to_sign_in(client, tenant, path):
    response = client.get(path, headers=host(tenant))
    assert response.status_code == 302 and "/sign-in" in response.headers["Location"]


def test_member_gets_403(client, tenant, site_user, sign_in_site):
    key = make_role(tenant)
    sign_in_site(tenant, site_user(tenant))
    assert client.get("/roles", headers=host(tenant)).status_code == 403
    assert client.get(f"/roles/{key}", headers=host(tenant)).status_code == 403
    assert client.post("/roles/new", data={"name": "X"}, headers=host(tenant)).status_code == 403
    assert client.post(f"/roles/{key}/delete", headers=host(tenant)).status_code == 403


def test_compliance_officer_may_look_but_not_change(client, tenant, site_user, sign_in_site):
    key = make_role(tenant)
    sign_in_site(tenant, site_user(tenant, ["compliance_officer"]))
    assert client.get("/roles", headers=host(tenant)).status_code == 200
    page = client.get(f"/roles/{key}", headers=host(tenant))
    assert page.status_code == 200 and "Save role" not in body(page)
    assert client.get("/roles/new", headers=host(tenant)).status_code == 403
    response = client.post(f"/roles/{key}", data={"name": "Renamed"}, headers=host(tenant))
    assert response.status_code == 403
    assert client.post(f"/roles/{key}/delete", headers=host(tenant)).status_code == 403
    assert role_row(tenant, key).name == "Help desk"


def test_another_tenants_role_is_404(client, make_tenant, tenant, admin):
    other = make_tenant()
    key = make_role(other, name="Secret squad")
    assert client.get(f"/roles/{key}", headers=host(tenant)).status_code == 404
    response = client.post(f"/roles/{key}", data={"name": "Mine now"}, headers=host(tenant))
    assert response.status_code == 404
    assert client.post(f"/roles/{key}/delete", headers=host(tenant)).status_code == 404
    assert role_row(other, key).name == "Secret squad"


def test_roles_page_lists_built_in_and_own_roles_with_member_counts(
    client, tenant, site_user, admin
):
    key = make_role(tenant)
    site_user(tenant, [key])
    site_user(tenant, [key])
    page = body(client.get("/roles", headers=host(tenant)))
    for name in ("Tenant admin", "Compliance officer", "Member", "Help desk"):
        assert name in page
    assert "Reset a user&#39;s two-factor authentication" in page
    assert 'aria-label="2 members of Help desk"' in page
    assert 'aria-label="1 members of Tenant admin"' in page


def test_built_in_role_is_read_only(client, tenant, admin):
    page = client.get("/roles/compliance_officer", headers=host(tenant))
    assert page.status_code == 200
    assert "cannot be changed" in body(page) and "Save role" not in body(page)
    response = client.post(
        "/roles/compliance_officer", data={"name": "Auditor"}, headers=host(tenant)
    )
    assert response.status_code == 404
    assert client.post("/roles/tenant_admin/delete", headers=host(tenant)).status_code == 404


def test_unknown_role_is_404(client, tenant, admin):
    assert client.get("/roles/no_such_role", headers=host(tenant)).status_code == 404


def test_create_role_with_permissions_is_audited(client, tenant, admin):
    assert client.get("/roles/new", headers=host(tenant)).status_code == 200
    response = client.post(
        "/roles/new",
        data={"name": "Help desk", "description": "First line", "permissions": [VIEW, RESET]},
        headers=host(tenant),
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/roles/help_desk"
    role = role_row(tenant, "help_desk")
    assert sorted(role.permissions) == sorted([VIEW, RESET]) and role.description == "First line"
    [entry] = audit_entries(tenant, AuditAction.ROLE_CREATE)
    assert entry.target_id == "help_desk" and entry.actor_id == str(admin.id)
    assert "Role Help desk created" in body(client.get("/roles/help_desk", headers=host(tenant)))


@pytest.mark.parametrize(
    "data, message",
    [
        ({"name": ""}, "Give the role a name."),
        ({"name": "X"}, "2 to 100 characters"),
        ({"name": "Tenant admin"}, "already exists"),
        ({"name": "New"}, "reserved"),
        ({"name": "Ok role", "permissions": ["tenancy:tenant:delete"]}, "is not a valid choice"),
    ],
)
def test_bad_role_input_is_422(client, tenant, admin, data, message):
    response = client.post("/roles/new", data=data, headers=host(tenant))
    assert response.status_code == 422
    assert message in body(response)
    assert not audit_entries(tenant, AuditAction.ROLE_CREATE)


def test_edit_role_is_audited(client, tenant, admin):
    key = make_role(tenant)
    response = client.post(
        f"/roles/{key}",
        data={"name": "Service desk", "description": "", "permissions": [VIEW]},
        headers=host(tenant),
    )
    assert response.status_code == 303
    role = role_row(tenant, key)
    assert role.name == "Service desk" and role.permissions == [VIEW]
    [entry] = audit_entries(tenant, AuditAction.ROLE_UPDATE)
    assert entry.detail["after"]["permissions"] == [VIEW]


def test_delete_role_removes_it_from_its_members(client, tenant, site_user, admin):
    key = make_role(tenant)
    holder = site_user(tenant, [key])
    page = body(client.get(f"/roles/{key}", headers=host(tenant)))
    assert "1 user loses the permissions of this role" in page
    response = client.post(f"/roles/{key}/delete", headers=host(tenant))
    assert response.status_code == 303 and response.headers["Location"] == "/roles"
    assert role_row(tenant, key) is None
    with db.tenant_scope(tenant) as session:
        assert roles.user_role_keys(session, holder.id) == []
    [entry] = audit_entries(tenant, AuditAction.ROLE_DELETE)
    assert entry.detail["members"] == 1


def test_deleting_the_role_that_makes_the_last_admin_is_refused(
    client, tenant, site_user, sign_in_as
):
    everything = [
        "accounts:user:view",
        "accounts:user:manage",
        "accounts:role:view",
        "accounts:role:manage",
    ]
    key = make_role(tenant, name="Owners", permissions=everything)
    site_user(tenant, [key])  # the only administrator
    # A platform admin's visit (holding every tenant permission, but not this role) tries it;
    # the holder could not: nobody changes a role they hold (tests/site/test_escalation.py).
    sign_in_as("platform_admin")
    open_tenant(client, tenant)
    response = client.post(f"/roles/{key}/delete", headers=host(tenant))
    assert response.status_code == 422
    assert "without an administrator" in body(response)
    assert role_row(tenant, key) is not None
    response = client.post(
        f"/roles/{key}", data={"name": "Owners", "permissions": [VIEW]}, headers=host(tenant)
    )
    assert response.status_code == 422
    assert "without an administrator" in body(response)


def test_removing_a_permission_takes_effect_on_the_next_request(
    client, tenant, site_user, sign_in_site, admin
):
    key = make_role(tenant, permissions=[VIEW])
    holder_client = client.application.test_client()
    sign_in_site(tenant, site_user(tenant, [key]), client=holder_client)
    assert holder_client.get("/users", headers=host(tenant)).status_code == 200
    response = client.post(
        f"/roles/{key}", data={"name": "Help desk", "permissions": [RESET]}, headers=host(tenant)
    )
    assert response.status_code == 303
    assert holder_client.get("/users", headers=host(tenant)).status_code == 403


def test_role_post_without_csrf_token_is_refused(app, client, tenant, admin):
    key = make_role(tenant)
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        assert client.post(f"/roles/{key}/delete", headers=host(tenant)).status_code == 400
        response = client.post("/roles/new", data={"name": "Sneaky"}, headers=host(tenant))
        assert response.status_code == 400
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert role_row(tenant, key) is not None and role_row(tenant, "sneaky") is None
