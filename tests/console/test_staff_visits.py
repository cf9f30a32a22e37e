"""Staff visits in a tenant re-checked in the database on every request (issue 11 §3), and the
hand-off refused without MFA where the tenant's MFA policy applies (§2).

The attacks here change the database directly, never calling the Redis clean-up that the
services run after commit: the visit must end (or shrink) because the database says so."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import ProgrammingError

from portal.accounts.settings import update_security_settings
from portal.compliance.audit import Actor, AuditAction
from portal.compliance.models import TenantAuditEntry
from portal.db import db
from portal.staff.models import StaffSession
from tests.conftest import sign_in_staff
from tests.console.test_tenant_access import CONSOLE, open_tenant, site


def enter(client, tenant):
    """Hand the signed-in client over to the tenant's site; returns the hand-off response."""
    return client.get(open_tenant(client, tenant), headers=site(tenant))


def platform_sql(statement: str, **params) -> None:
    with db.engine.begin() as connection:
        connection.execute(text(statement), params)


def signed_out_of(client, tenant, path: str = "/users") -> bool:
    response = client.get(path, headers=site(tenant))
    return response.status_code == 302 and "/sign-in" in response.headers["Location"]


def access_entries(tenant) -> list[TenantAuditEntry]:
    with db.tenant_scope(tenant) as session:
        return session.scalars(
            select(TenantAuditEntry)
            .where(TenantAuditEntry.action == AuditAction.STAFF_TENANT_ACCESS)
            .order_by(TenantAuditEntry.seq)
        ).all()


def require_mfa(tenant, policy: str = "admins") -> None:
    with db.tenant_scope(tenant) as session:
        update_security_settings(session, actor=Actor.system("test"), mfa_policy=policy)


@pytest.fixture
def mfa_optional(app):
    """STAFF_MFA_REQUIRED=false: staff may sign in with a password alone."""
    settings = app.config["PORTAL"]
    app.config["PORTAL"] = dataclasses.replace(settings, staff_mfa_required=False)
    yield
    app.config["PORTAL"] = settings


# ---- §3: re-checked in the database ---------------------------------------------------------


def test_a_staff_member_deactivated_in_the_database_is_refused_on_the_next_request(
    client, sign_in_as, tenant
):
    member = sign_in_as("platform_admin")
    assert enter(client, tenant).status_code == 303
    assert client.get("/users", headers=site(tenant)).status_code == 200
    platform_sql("UPDATE platform.staff_users SET active = false WHERE id = :i", i=member.id)
    assert signed_out_of(client, tenant)
    platform_sql("UPDATE platform.staff_users SET active = true WHERE id = :i", i=member.id)
    assert signed_out_of(client, tenant)  # the visit is over, not merely paused


def test_console_sign_out_ends_every_visit_of_that_console_session(client, sign_in_as, make_tenant):
    sign_in_as("support")
    first, second = make_tenant(), make_tenant()
    enter(client, first)
    enter(client, second)
    assert client.get("/users", headers=site(first)).status_code == 200
    assert client.post("/sign-out", headers=CONSOLE).status_code == 303
    assert signed_out_of(client, first) and signed_out_of(client, second)


def test_a_console_session_deleted_in_the_database_ends_its_visits(client, sign_in_as, tenant):
    member = sign_in_as("support")
    enter(client, tenant)
    platform_sql("DELETE FROM platform.staff_sessions WHERE staff_id = :i", i=member.id)
    assert signed_out_of(client, tenant)


def test_a_console_session_past_its_absolute_lifetime_ends_its_visits(client, sign_in_as, tenant):
    from portal.staff.sessions import STAFF_ABSOLUTE_SECONDS

    assert STAFF_ABSOLUTE_SECONDS == 12 * 60 * 60  # as platform_access.staff_visit has it
    member = sign_in_as("support")
    enter(client, tenant)
    platform_sql(
        "UPDATE platform.staff_sessions SET created_at = now() - interval '13 hours' "
        "WHERE staff_id = :i",
        i=member.id,
    )
    assert signed_out_of(client, tenant)


def test_a_visit_of_another_console_session_survives_a_sign_out_elsewhere(
    app, client, sign_in_as, tenant
):
    member = sign_in_as("support")
    enter(client, tenant)
    other = app.test_client()
    assert sign_in_staff(other, member).status_code == 303
    assert other.post("/sign-out", headers=CONSOLE).status_code == 303
    assert client.get("/users", headers=site(tenant)).status_code == 200


def test_a_role_downgrade_takes_effect_on_the_next_request(client, sign_in_as, tenant):
    member = sign_in_as("platform_admin")
    enter(client, tenant)
    assert client.get("/settings/security", headers=site(tenant)).status_code == 200
    platform_sql("UPDATE platform.staff_users SET role = 'support' WHERE id = :i", i=member.id)
    assert client.get("/settings/security", headers=site(tenant)).status_code == 403
    page = client.get("/users", headers=site(tenant))
    assert page.status_code == 200 and b"read-only" in page.data


def test_removing_the_tenant_from_an_assignment_ends_the_visit(client, sign_in_as, make_tenant):
    member = sign_in_as("support")
    mine, other = make_tenant(), make_tenant()
    enter(client, mine)
    platform_sql("UPDATE platform.staff_users SET all_tenants = false WHERE id = :i", i=member.id)
    platform_sql(
        "INSERT INTO platform.staff_tenants (staff_id, tenant_id) VALUES (:s, :t)",
        s=member.id,
        t=other.id,
    )
    assert signed_out_of(client, mine)


def test_a_platform_admin_visit_survives_the_all_tenants_flag(client, sign_in_as, tenant):
    member = sign_in_as("platform_admin")
    enter(client, tenant)
    platform_sql("UPDATE platform.staff_users SET all_tenants = false WHERE id = :i", i=member.id)
    assert client.get("/users", headers=site(tenant)).status_code == 200


def test_the_tenant_role_may_ask_about_a_visit_but_not_read_staff_rows(client, sign_in_as, tenant):
    member = sign_in_as("support")
    with db.platform_scope() as session:
        console_session = session.scalars(
            select(StaffSession.id).where(StaffSession.staff_id == member.id)
        ).one()
    with db.tenant_scope(tenant) as session:
        answer = session.execute(
            text("SELECT role, mfa FROM platform_access.staff_visit(:c, :s, :t)"),
            {"c": console_session, "s": member.id, "t": tenant.id},
        ).one()
        assert tuple(answer) == ("support", True)
        nobody = session.execute(
            text("SELECT * FROM platform_access.staff_visit(:c, :s, :t)"),
            {"c": console_session, "s": member.id + 1, "t": tenant.id},
        ).all()
        assert nobody == []
    with pytest.raises(ProgrammingError, match="permission denied for schema platform"):
        with db.tenant_scope(tenant) as session:
            session.execute(text("SELECT email FROM platform.staff_users")).all()


# ---- §2: the hand-off and the tenant's MFA policy -------------------------------------------


def test_hand_off_is_refused_without_mfa_where_the_tenant_requires_it_for_admins(
    client, make_staff, tenant, mfa_optional
):
    member = make_staff("platform_admin", mfa=False)
    assert sign_in_staff(client, member).status_code == 303
    require_mfa(tenant, "admins")
    refused = enter(client, tenant)
    assert refused.status_code == 403
    assert b"requires two-factor authentication" in refused.data
    assert signed_out_of(client, tenant)
    entry = access_entries(tenant)[-1]
    assert entry.actor_id == str(member.id)
    assert entry.detail == {"role": "platform_admin", "mfa": False, "refused": "mfa_required"}


def test_support_without_mfa_may_enter_a_tenant_whose_policy_covers_only_admins(
    client, make_staff, tenant, mfa_optional
):
    member = make_staff("support", mfa=False)
    sign_in_staff(client, member)
    require_mfa(tenant, "admins")
    assert enter(client, tenant).status_code == 303
    assert access_entries(tenant)[-1].detail["mfa"] is False
    require_mfa(tenant, "everyone")
    assert enter(client, tenant).status_code == 403


def test_hand_off_with_an_mfa_session_is_allowed_and_the_tenant_trail_says_so(
    client, sign_in_as, tenant
):
    sign_in_as("platform_admin")
    require_mfa(tenant, "everyone")
    assert enter(client, tenant).status_code == 303
    assert client.get("/settings/security", headers=site(tenant)).status_code == 200
    entry = access_entries(tenant)[-1]
    assert entry.detail["mfa"] is True and entry.detail["role"] == "platform_admin"
    assert "refused" not in entry.detail
