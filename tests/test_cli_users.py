"""`portal users`: create (with a password from stdin, or invited), list, suspend, reactivate a
tenant's users through the same services as the site; bad input exits 2 with one line."""

import json

import pytest
from sqlalchemy import func, select

from portal.accounts.lifecycle import find_user
from portal.accounts.models import UserSession
from portal.compliance.audit import AuditAction
from portal.compliance.models import TenantAuditEntry
from portal.config import Settings
from portal.db import db
from portal.mail_models import OutboxMessage
from portal.tenancy.routing import TenantRef
from portal.tenancy.urls import tenant_base_url
from tests.conftest import PASSWORD


def create(run_cli, slug, email, *extra, password=PASSWORD):
    args = ["users", "create", "--tenant", slug, "--email", email, *extra]
    if password is not None:
        return run_cli(*args, "--password-stdin", input=f"{password}\n")
    return run_cli(*args)


def sign_in(client, slug, email, password=PASSWORD):
    return client.post(
        "/sign-in",
        data={"email": email, "password": password},
        headers={"Host": f"{slug}.localhost"},
    )


def test_create_with_password_from_stdin_lets_the_user_sign_in(run_cli, client, tenant):
    result = create(run_cli, tenant.slug, "Robin@Example.com", "--name", "Robin Park")
    assert result.exit_code == 0, result.output
    assert "robin@example.com".lower() in result.output.lower() and "(active)" in result.output
    assert sign_in(client, tenant.slug, "robin@example.com").status_code == 303


def test_create_without_password_makes_an_invited_user(run_cli, tenant):
    result = create(run_cli, tenant.slug, "later@example.com", password=None)
    assert result.exit_code == 0, result.output
    assert "(invited)" in result.output and "--invite" in result.output


def test_create_with_invite_emails_a_link_to_the_tenant_site(run_cli, tenant):
    result = create(run_cli, tenant.slug, "invitee@example.com", "--invite", password=None)
    assert result.exit_code == 0, result.output
    with db.platform_scope() as session:
        message = session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.tenant_slug == tenant.slug,
                OutboxMessage.to_addr == "invitee@example.com",
            )
        ).one()
    assert message.kind == "invitation"
    assert f"http://{tenant.slug}.localhost" in message.body and "/invitation/" in message.body


@pytest.mark.parametrize(
    "email, extra, password, message",
    [
        ("bad-email", [], PASSWORD, "valid email"),
        ("weak@example.com", [], "short", "password refused: Use at least 12"),
        ("common@example.com", [], "password1234", "most common"),
        ("role@example.com", ["--role", "wizard"], PASSWORD, "Unknown role: wizard"),
        ("both@example.com", ["--invite"], PASSWORD, "--invite"),
    ],
)
def test_create_refuses_bad_input_with_exit_2(run_cli, tenant, email, extra, password, message):
    result = create(run_cli, tenant.slug, email, *extra, password=password)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    with db.tenant_scope(tenant) as session:
        assert find_user(session, email) is None


def test_create_refuses_a_duplicate_email(run_cli, tenant):
    assert create(run_cli, tenant.slug, "dup@example.com").exit_code == 0
    result = create(run_cli, tenant.slug, "DUP@example.com")
    assert result.exit_code == 2 and "already exists" in result.output
    assert "Traceback" not in result.output


def test_create_refuses_beyond_the_tenant_user_limit(run_cli, make_tenant):
    tenant = make_tenant(max_users=1)
    assert create(run_cli, tenant.slug, "one@example.com").exit_code == 0
    result = create(run_cli, tenant.slug, "two@example.com")
    assert result.exit_code == 2 and "limit of 1 users" in result.output


def test_commands_refuse_an_unknown_tenant(run_cli):
    for args in (
        ["users", "create", "--tenant", "no-such-tenant", "--email", "a@example.com"],
        ["users", "list", "--tenant", "no-such-tenant"],
        ["users", "suspend", "--tenant", "no-such-tenant", "--email", "a@example.com"],
        ["users", "reactivate", "--tenant", "no-such-tenant", "--email", "a@example.com"],
    ):
        result = run_cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "no tenant with slug 'no-such-tenant'" in result.output
        assert "Traceback" not in result.output


def test_create_refuses_a_suspended_tenant(run_cli, tenant):
    assert run_cli("tenants", "suspend", tenant.slug).exit_code == 0
    result = create(run_cli, tenant.slug, "x@example.com")
    assert result.exit_code == 2 and f"tenant {tenant.slug} is suspended" in result.output


def test_list_json_gives_each_user_with_roles_and_mfa(run_cli, tenant):
    assert create(run_cli, tenant.slug, "boss@example.com", "--role", "tenant_admin").exit_code == 0
    assert (
        create(
            run_cli,
            tenant.slug,
            "both@example.com",
            "--role",
            "compliance_officer",
            "--role",
            "tenant_admin",
        ).exit_code
        == 0
    )
    assert create(run_cli, tenant.slug, "plain@example.com", password=None).exit_code == 0
    result = run_cli("users", "list", "--tenant", tenant.slug, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["email"] for r in rows] == [
        "boss@example.com",
        "both@example.com",
        "plain@example.com",
    ]
    assert rows[0]["id"] < rows[1]["id"] < rows[2]["id"]
    assert rows[0]["roles"] == ["tenant_admin"]
    assert rows[1]["roles"] == ["compliance_officer", "tenant_admin"]
    assert rows[2]["roles"] == ["member"] and rows[2]["status"] == "invited"
    assert rows[0]["mfa"] is False and rows[0]["last_sign_in_at"] is None
    assert rows[0]["created_at"]

    invited = run_cli("users", "list", "--tenant", tenant.slug, "--status", "invited", "--json")
    assert [r["email"] for r in json.loads(invited.output)] == ["plain@example.com"]


def test_list_table_and_empty_list(run_cli, tenant):
    empty = run_cli("users", "list", "--tenant", tenant.slug, "--json")
    assert empty.exit_code == 0 and json.loads(empty.output) == []
    assert create(run_cli, tenant.slug, "boss@example.com", "--role", "tenant_admin").exit_code == 0
    table = run_cli("users", "list", "--tenant", tenant.slug)
    assert table.exit_code == 0
    header, row = table.output.splitlines()
    assert header.split()[:4] == ["EMAIL", "NAME", "STATUS", "ROLES"]
    assert "boss@example.com" in row and "Tenant admin" in row and "never" in row


def test_suspend_ends_the_users_sessions_and_is_audited_as_the_cli(run_cli, client, tenant):
    assert create(run_cli, tenant.slug, "boss@example.com", "--role", "tenant_admin").exit_code == 0
    assert create(run_cli, tenant.slug, "worker@example.com").exit_code == 0
    assert sign_in(client, tenant.slug, "worker@example.com").status_code == 303
    with db.tenant_scope(tenant) as session:
        worker = find_user(session, "worker@example.com")
        assert session.scalar(select(func.count()).where(UserSession.user_id == worker.id)) == 1

    result = run_cli(
        "users", "suspend", "--tenant", tenant.slug, "--email", "Worker@example.com",
        "--reason", "lost laptop",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "suspended worker@example.com" in result.output

    with db.tenant_scope(tenant) as session:
        worker = find_user(session, "worker@example.com")
        assert worker.status == "suspended" and worker.status_reason == "lost laptop"
        assert session.scalar(select(func.count()).where(UserSession.user_id == worker.id)) == 0
        entry = session.scalars(
            select(TenantAuditEntry).where(TenantAuditEntry.action == AuditAction.USER_SUSPEND)
        ).one()
    assert entry.target_id == str(worker.id) and entry.actor_type == "system"
    assert entry.actor_label.startswith("cli:") and entry.detail["sessions_ended"] == 1
    # The old cookie no longer signs anyone in.
    home = client.get("/", headers={"Host": f"{tenant.slug}.localhost"})
    assert home.status_code in (302, 303) and "/sign-in" in home.headers["Location"]

    again = run_cli("users", "suspend", "--tenant", tenant.slug, "--email", "worker@example.com")
    assert again.exit_code == 0 and "already suspended" in again.output


def test_reactivate_restores_sign_in(run_cli, client, tenant):
    assert create(run_cli, tenant.slug, "boss@example.com", "--role", "tenant_admin").exit_code == 0
    assert create(run_cli, tenant.slug, "worker@example.com").exit_code == 0
    args = ["--tenant", tenant.slug, "--email", "worker@example.com"]
    assert run_cli("users", "suspend", *args).exit_code == 0
    assert sign_in(client, tenant.slug, "worker@example.com").status_code == 422

    result = run_cli("users", "reactivate", *args)
    assert result.exit_code == 0 and "reactivated worker@example.com (active)" in result.output
    assert sign_in(client, tenant.slug, "worker@example.com").status_code == 303
    again = run_cli("users", "reactivate", *args)
    assert again.exit_code == 0 and "not suspended (active)" in again.output
    with db.tenant_scope(tenant) as session:
        entry = session.scalars(
            select(TenantAuditEntry).where(TenantAuditEntry.action == AuditAction.USER_REACTIVATE)
        ).one()
    assert entry.actor_label.startswith("cli:")


def test_suspend_refuses_the_last_admin_and_unknown_emails(run_cli, tenant):
    assert create(run_cli, tenant.slug, "boss@example.com", "--role", "tenant_admin").exit_code == 0
    result = run_cli("users", "suspend", "--tenant", tenant.slug, "--email", "boss@example.com")
    assert result.exit_code == 2 and "without an administrator" in result.output
    assert "Traceback" not in result.output
    with db.tenant_scope(tenant) as session:
        assert find_user(session, "boss@example.com").status == "active"

    for command in ("suspend", "reactivate"):
        missing = run_cli(
            "users", command, "--tenant", tenant.slug, "--email", "nobody@example.com"
        )
        assert (
            missing.exit_code == 2 and "no user with email 'nobody@example.com'" in missing.output
        )


def test_tenant_base_url_uses_the_first_custom_domain_and_the_dev_port():
    class Domain:
        def __init__(self, domain):
            self.domain = domain

    class Row:
        slug = "acme"
        domains = [Domain("portal.acme.example"), Domain("zz.acme.example")]

    ref = TenantRef(
        id=1, slug="acme", name="Acme", status="active", suspended_reason=None, max_users=None
    )
    dev = Settings(port=5000)
    assert tenant_base_url(ref, dev) == "http://acme.localhost:5000"
    assert tenant_base_url(Row(), dev) == "http://portal.acme.example:5000"
    production = Settings(
        env="production", base_domain="portal.msp.example", url_scheme="https", port=8000
    )
    assert tenant_base_url(ref, production) == "https://acme.portal.msp.example"
    assert tenant_base_url(Row(), production) == "https://portal.acme.example"
