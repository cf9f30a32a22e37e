"""portal.accounts.bulk: one action on many users, each through its own service and audited,
refusals reported per row."""

from __future__ import annotations

import pytest

from portal.accounts import bulk, lifecycle
from portal.accounts.models import UserStatus
from portal.accounts.validation import AccountError
from portal.compliance.audit import AuditAction
from portal.db import db
from tests.accounts.support import (
    SYSTEM,
    add_session,
    entries,
    make,
    session_count,
)

# ---- bulk ---------------------------------------------------------------------------------


def test_bulk_suspend_reports_a_refusal_and_changes_the_others(tenant):
    with db.tenant_scope(tenant) as session:
        admin = make(session, "admin@example.com", ["tenant_admin"])
        one = make(session, "one@example.com")
        two = make(session, "two@example.com")
        lifecycle.suspend_user(session, two, actor=SYSTEM)
        add_session(session, one)
        result = bulk.bulk_apply(
            session, [admin.id, one.id, two.id, 999_999], "suspend", actor=SYSTEM
        )
        assert (result.changed, result.unchanged) == (1, 1)
        assert result.refused == [
            (
                "admin@example.com",
                "This would leave the organisation without an administrator. "
                "Make someone else a tenant admin first.",
            )
        ]
        assert result.summary("suspended") == "1 user suspended, 1 already so, 1 refused"
        assert admin.status == UserStatus.ACTIVE and one.status == UserStatus.SUSPENDED
        assert session_count(session, one) == 0
        suspended = entries(session, AuditAction.USER_SUSPEND)
    assert [e.target_id for e in suspended] == [str(two.id), str(one.id)]
    assert suspended[-1].detail["reason"] == "bulk action"


def test_bulk_assign_role_counts_holders_as_unchanged(tenant):
    with db.tenant_scope(tenant) as session:
        one = make(session, "one@example.com")
        two = make(session, "two@example.com", ["compliance_officer"])
        result = bulk.bulk_apply(
            session, [one.id, two.id], "assign_role", actor=SYSTEM, role_key="compliance_officer"
        )
        assert (result.changed, result.unchanged, result.refused) == (1, 1, [])
        assert len(entries(session, AuditAction.USER_ROLES_CHANGE, one.id)) == 1


@pytest.mark.parametrize(
    "ids, action, role_key, field",
    [
        ([1], "launch", None, "action"),
        ([1], "assign_role", "wizard", "role"),
        ([], "suspend", None, "ids"),
    ],
)
def test_bulk_refuses_what_it_cannot_do(tenant, ids, action, role_key, field):
    with db.tenant_scope(tenant) as session, pytest.raises(AccountError) as error:
        bulk.bulk_apply(session, ids, action, actor=SYSTEM, role_key=role_key)
    assert error.value.field == field


def test_bulk_revoke_and_delete_are_audited_per_user(tenant):
    with db.tenant_scope(tenant) as session:
        users = [make(session, f"u{i}@example.com") for i in range(3)]
        for user in users[:2]:
            add_session(session, user)
        result = bulk.bulk_apply(session, [u.id for u in users], "revoke_sessions", actor=SYSTEM)
        assert (result.changed, result.unchanged) == (2, 1)
        assert len(entries(session, AuditAction.SESSION_REVOKE)) == 2
        result = bulk.bulk_apply(session, [u.id for u in users], "delete", actor=SYSTEM)
        assert result.changed == 3 and len(entries(session, AuditAction.USER_DELETE)) == 3
