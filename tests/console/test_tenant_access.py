"""MSP staff opening a tenant's users from the console: a one-time hand-off, audited in both
trails; support is read-only, platform admins have a tenant admin's powers."""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

from sqlalchemy import select

from portal.accounts.lifecycle import create_user
from portal.accounts.models import User, UserStatus
from portal.compliance.audit import Actor, AuditAction
from portal.compliance.models import PlatformAuditEntry, TenantAuditEntry
from portal.db import db
from tests.conftest import PASSWORD

CONSOLE = {"Host": "localhost"}


def site(tenant):
    return {"Host": f"{tenant.slug}.localhost"}


def add_user(tenant, email="pat@example.com"):
    with db.tenant_scope(tenant) as session:
        return create_user(
            session, email=email, name="Pat", password=PASSWORD, actor=Actor.system("test")
        ).id


def open_tenant(client, tenant):
    """Follow the console's hand-off; returns the tenant-site path it pointed at."""
    response = client.post(f"/tenants/{tenant.slug}/open", headers=CONSOLE)
    assert response.status_code == 200, response.data
    assert response.headers["Cache-Control"] == "no-store"
    link = re.search(r'id="handoff" href="([^"]+)"', response.data.decode()).group(1)
    target = urlsplit(html.unescape(link))
    assert target.hostname == f"{tenant.slug}.localhost"
    return target.path


def test_support_opens_tenant_users_read_only_and_both_trails_record_it(client, sign_in_as, tenant):
    member = sign_in_as("support")
    user_id = add_user(tenant)
    path = open_tenant(client, tenant)
    response = client.get(path, headers=site(tenant))
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/users")

    page = client.get("/users", headers=site(tenant))
    assert page.status_code == 200
    assert b"as MSP staff" in page.data and b"read-only" in page.data
    assert b"pat@example.com" in page.data

    refused = client.post(f"/users/{user_id}/suspend", data={"reason": "x"}, headers=site(tenant))
    assert refused.status_code == 403
    with db.tenant_scope(tenant) as session:
        assert session.get(User, user_id).status == UserStatus.ACTIVE
        entry = session.scalars(
            select(TenantAuditEntry).where(
                TenantAuditEntry.action == AuditAction.STAFF_TENANT_ACCESS
            )
        ).one()
        assert (entry.actor_type, entry.actor_id) == ("staff", str(member.id))
    with db.platform_scope() as session:
        entry = session.scalars(
            select(PlatformAuditEntry)
            .where(PlatformAuditEntry.action == AuditAction.STAFF_TENANT_ACCESS)
            .where(PlatformAuditEntry.target_id == str(tenant.id))
        ).one()
        assert entry.actor_id == str(member.id)


def test_platform_admin_visit_can_suspend_a_user_as_staff_actor(client, sign_in_as, tenant):
    member = sign_in_as("platform_admin")
    user_id = add_user(tenant)
    client.get(open_tenant(client, tenant), headers=site(tenant))
    response = client.post(
        f"/users/{user_id}/suspend", data={"reason": "asked by customer"}, headers=site(tenant)
    )
    assert response.status_code in (200, 303)
    with db.tenant_scope(tenant) as session:
        assert session.get(User, user_id).status == UserStatus.SUSPENDED
        entry = session.scalars(
            select(TenantAuditEntry).where(TenantAuditEntry.action == AuditAction.USER_SUSPEND)
        ).one()
        assert (entry.actor_type, entry.actor_id) == ("staff", str(member.id))


def test_hand_off_link_works_once_and_only_for_its_tenant(client, sign_in_as, make_tenant):
    sign_in_as("support")
    mine, other = make_tenant(), make_tenant()
    path = open_tenant(client, mine)
    stolen = client.get(path, headers=site(other))
    assert stolen.status_code == 410
    # The attempt on the wrong tenant consumed it: it is gone for its own tenant too.
    assert client.get(path, headers=site(mine)).status_code == 410

    path = open_tenant(client, mine)
    assert client.get(path, headers=site(mine)).status_code == 303
    again = client.get(path, headers=site(mine))
    assert again.status_code == 410


def test_staff_visit_has_no_account_pages(client, sign_in_as, tenant):
    sign_in_as("support")
    client.get(open_tenant(client, tenant), headers=site(tenant))
    response = client.get("/account", headers=site(tenant))
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/users")


def test_compliance_staff_cannot_open_tenant_users(client, sign_in_as, tenant):
    sign_in_as("compliance")
    assert client.post(f"/tenants/{tenant.slug}/open", headers=CONSOLE).status_code == 403


def test_opening_needs_csrf_token(app, client, sign_in_as, tenant):
    sign_in_as("platform_admin")
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        assert client.post(f"/tenants/{tenant.slug}/open", headers=CONSOLE).status_code == 400
    finally:
        app.config["WTF_CSRF_ENABLED"] = False


def test_signed_out_staff_cannot_open_a_tenant(client, tenant):
    response = client.post(f"/tenants/{tenant.slug}/open", headers=CONSOLE)
    assert response.status_code == 302
    assert "/sign-in" in response.headers["Location"]


def test_deactivating_staff_ends_their_open_tenant_visits(client, sign_in_as, make_staff, tenant):
    from portal.staff.members import deactivate_staff
    from portal.staff.models import StaffUser

    member = sign_in_as("support")
    client.get(open_tenant(client, tenant), headers=site(tenant))
    assert client.get("/", headers=site(tenant)).status_code == 200
    with db.platform_scope() as session:
        deactivate_staff(session, session.get(StaffUser, member.id), actor=Actor.system("test"))
    response = client.get("/", headers=site(tenant))
    assert response.status_code == 302
    assert "/sign-in" in response.headers["Location"]
