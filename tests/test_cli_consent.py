"""`portal consent grant|withdraw`: records an admin-sourced answer through the same service as
the site; bad input exits 2 with one line."""

from __future__ import annotations

import pytest

from portal.compliance import consent
from portal.compliance.audit import AuditAction
from portal.db import db
from tests.site.support import SYSTEM, audit_entries, make_user


@pytest.fixture
def purpose(tenant):
    with db.tenant_scope(tenant) as session:
        consent.define_purpose(
            session,
            key="newsletter",
            title="Monthly newsletter",
            description="One email a month.",
            actor=SYSTEM,
        )
    return "newsletter"


def run_consent(run_cli, action, slug, email, purpose_key):
    return run_cli("consent", action, "--tenant", slug, "--email", email, "--purpose", purpose_key)


def test_grant_then_withdraw_records_admin_answers(run_cli, tenant, purpose):
    user = make_user(tenant, email="robin@example.com")
    result = run_consent(run_cli, "grant", tenant.slug, "Robin@Example.com", purpose)
    assert result.exit_code == 0, result.output
    assert result.output == "newsletter granted for robin@example.com\n"
    again = run_consent(run_cli, "grant", tenant.slug, "robin@example.com", purpose)
    assert again.exit_code == 0 and "already granted" in again.output
    result = run_consent(run_cli, "withdraw", tenant.slug, "robin@example.com", purpose)
    assert result.exit_code == 0 and "newsletter withdrawn" in result.output
    with db.tenant_scope(tenant) as session:
        rows = consent.history(session, user.id)
    assert [(r.record.action, r.record.source) for r in rows] == [
        ("withdrawn", "admin"),
        ("granted", "admin"),
    ]
    (entry,) = audit_entries(tenant, AuditAction.CONSENT_GRANT)
    assert entry.actor_type == "system" and entry.actor_label.startswith("cli:")


@pytest.mark.parametrize(
    ("slug", "email", "key", "message"),
    [
        ("no-such-tenant", "robin@example.com", "newsletter", "no tenant with slug"),
        (None, "nobody@example.com", "newsletter", "no user with email"),
        (None, "robin@example.com", "nope", "No consent purpose"),
    ],
)
def test_bad_input_exits_2_with_one_line(run_cli, tenant, purpose, slug, email, key, message):
    make_user(tenant, email="robin@example.com")
    result = run_consent(run_cli, "grant", slug or tenant.slug, email, key)
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_an_invited_user_is_refused(run_cli, tenant, purpose):
    make_user(tenant, email="later@example.com", status="invited", password=None)
    result = run_consent(run_cli, "withdraw", tenant.slug, "later@example.com", purpose)
    assert result.exit_code == 2 and "invited" in result.output
