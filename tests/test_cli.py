"""The `portal` command: thin callers of the services; bad input exits 2 with one line."""

import json

import pytest

from tests.conftest import purge, unique_slug


@pytest.fixture
def cli_slug():
    slug = unique_slug("cli")
    yield slug
    purge(slug)


def test_tenant_lifecycle_from_the_command_line(run_cli, cli_slug):
    created = run_cli(
        "tenants",
        "create",
        "--slug",
        cli_slug,
        "--name",
        "CLI Org",
        "--domain",
        f"{cli_slug}.example.com",
        "--max-users",
        "5",
    )
    assert created.exit_code == 0, created.output
    listed = json.loads(run_cli("tenants", "list", "--json").output)
    row = next(r for r in listed if r["slug"] == cli_slug)
    assert row["domains"] == [f"{cli_slug}.example.com"] and row["max_users"] == 5
    assert row["status"] == "active" and row["schema_revision"]
    assert run_cli("tenants", "suspend", cli_slug, "--reason", "test").exit_code == 0
    assert run_cli("tenants", "resume", cli_slug).exit_code == 0
    deleted = run_cli("tenants", "delete", cli_slug)
    assert deleted.exit_code == 0 and "purged after" in deleted.output
    assert run_cli("tenants", "purge", cli_slug, "--force").exit_code == 0
    assert cli_slug not in run_cli("tenants", "list").output
    assert run_cli("audit", "verify").exit_code == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["tenants", "create", "--slug", "Bad Slug", "--name", "x"], "lower-case"),
        (["tenants", "create", "--slug", "www", "--name", "x"], "reserved"),
        (["tenants", "create", "--slug", "okay-slug", "--name", "   "], "name"),
        (
            ["tenants", "create", "--slug", "okay-slug", "--name", "x", "--domain", "nope"],
            "valid domain",
        ),
        (["tenants", "create", "--slug", "okay-slug", "--name", "x", "--max-users", "-1"], "-1"),
        (["tenants", "suspend", "no-such-tenant"], "no tenant"),
        (["tenants", "resume", "no-such-tenant"], "no tenant"),
        (["tenants", "delete", "no-such-tenant"], "no tenant"),
        (["tenants", "migrate", "--jobs", "0"], "0"),
        (["audit", "verify", "--tenant", "no-such-tenant"], "no tenant"),
        (
            ["staff", "create", "--email", "not-an-email", "--role", "support", "--password-stdin"],
            "email",
        ),
        (
            ["staff", "create", "--email", "a@b.example", "--role", "wizard", "--password-stdin"],
            "wizard",
        ),
    ],
)
def test_bad_input_exits_2_with_a_one_line_message(run_cli, args, message):
    result = run_cli(*args, input="a perfectly long password\n")
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_staff_create_refuses_a_short_password(run_cli):
    result = run_cli(
        "staff",
        "create",
        "--email",
        "short@msp.example",
        "--role",
        "support",
        "--password-stdin",
        input="short\n",
    )
    assert result.exit_code == 2 and "at least 12" in result.output


def test_staff_create_refuses_a_common_password(run_cli):
    result = run_cli(
        "staff",
        "create",
        "--email",
        "common@msp.example",
        "--role",
        "support",
        "--password-stdin",
        input="password1234\n",
    )
    assert result.exit_code == 2 and "most common passwords" in result.output


def test_staff_reset_mfa_clears_mfa_ends_sessions_and_is_audited(run_cli, app, make_staff):
    from sqlalchemy import select

    from portal.compliance.models import PlatformAuditEntry
    from portal.db import db
    from portal.staff.models import StaffBackupCode, StaffSession, StaffUser
    from tests.conftest import sign_in_staff

    member = make_staff()
    assert sign_in_staff(app.test_client(), member).status_code == 303
    result = run_cli("staff", "reset-mfa", "--email", member.email.upper())
    assert result.exit_code == 0, result.output
    assert f"reset two-factor authentication of {member.email}" in result.output
    with db.platform_scope() as session:
        row = session.get(StaffUser, member.id)
        assert row.mfa_enabled_at is None and row.mfa_secret is None
        assert not session.scalars(
            select(StaffBackupCode).where(StaffBackupCode.staff_id == member.id)
        ).all()
        assert not session.scalars(
            select(StaffSession).where(StaffSession.staff_id == member.id)
        ).all()
        entry = session.scalars(
            select(PlatformAuditEntry)
            .where(PlatformAuditEntry.action == "console:staff:mfa_reset")
            .where(PlatformAuditEntry.target_id == str(member.id))
        ).one()
        assert entry.actor_type == "system" and entry.detail == {"sessions_ended": 1}
    again = run_cli("staff", "reset-mfa", "--email", member.email)
    assert again.exit_code == 0 and "no two-factor authentication to reset" in again.output


def test_staff_reset_mfa_of_an_unknown_email_exits_2(run_cli, app):
    result = run_cli("staff", "reset-mfa", "--email", "nobody-here@msp.example")
    assert result.exit_code == 2
    assert "no staff member with email nobody-here@msp.example" in result.output
    assert "Traceback" not in result.output


def test_after_reset_mfa_the_member_must_enrol_at_the_next_sign_in(run_cli, app, make_staff):
    from tests.conftest import PASSWORD

    member = make_staff()
    run_cli("staff", "reset-mfa", "--email", member.email)
    client = app.test_client()
    signed_in = client.post(
        "/sign-in",
        data={"email": member.email, "password": PASSWORD},
        headers={"Host": "localhost"},
    )
    assert signed_in.status_code == 303 and signed_in.location == "/"
    response = client.get("/tenants", headers={"Host": "localhost"})
    assert response.status_code == 302 and response.location == "/account"


def test_tenants_migrate_reports_all_at_head(run_cli, tenant):
    result = run_cli("tenants", "migrate", "--jobs", "2")
    assert result.exit_code == 0, result.output
    assert "0 migrated, 0 failed" in result.output


def test_db_url_prints_the_database_in_use(run_cli, urls):
    result = run_cli("db", "url")
    assert result.exit_code == 0 and result.output.strip() == urls["database_url"]
