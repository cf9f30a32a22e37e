"""portal.accounts.lifecycle: creating users within the quota, profile changes, suspend and
reactivate, soft delete and restore, signing a user out; each change audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from portal.accounts import invitations, lifecycle
from portal.accounts.models import UserSession, UserStatus, UserToken
from portal.accounts.validation import AccountError, QuotaExceeded
from portal.compliance.audit import Actor, AuditAction
from portal.db import db
from tests.accounts.support import (
    SYSTEM,
    add_session,
    entries,
    make,
    session_count,
)

# ---- creating users and the quota ----------------------------------------------------------


def test_create_user_writes_its_audit_entry(tenant):
    with db.tenant_scope(tenant) as session:
        user = make(session, "Ann@Example.com", ["compliance_officer"])
        [entry] = entries(session, AuditAction.USER_CREATE, user.id)
    assert entry.detail == {"status": "active", "roles": ["compliance_officer"]}
    assert entry.personal == {"email": "Ann@Example.com", "name": ""}
    assert entry.actor_type == "system"


def test_create_user_refuses_the_same_email_in_other_case(tenant):
    with db.tenant_scope(tenant) as session:
        make(session, "ann@example.com")
        with pytest.raises(AccountError, match="already exists") as error:
            make(session, "ANN@example.com")
    assert error.value.field == "email"


def test_create_user_refuses_unknown_roles(tenant):
    with db.tenant_scope(tenant) as session, pytest.raises(AccountError, match="Unknown role"):
        make(session, "ann@example.com", ["wizard"])


def test_quota_counts_everyone_but_the_deleted(make_tenant):
    tenant = make_tenant(max_users=2)
    with db.tenant_scope(tenant) as session:
        first = make(session, "one@example.com")
        make(session, "two@example.com")
        with pytest.raises(QuotaExceeded, match="limit of 2 users"):
            make(session, "three@example.com")
        lifecycle.delete_user(session, first, actor=SYSTEM)
        make(session, "three@example.com")
        with pytest.raises(QuotaExceeded):
            lifecycle.restore_user(session, first, actor=SYSTEM)
        assert first.status == UserStatus.DELETED
        assert not entries(session, AuditAction.USER_RESTORE)


# ---- profile, roles, lifecycle ------------------------------------------------------------


def test_update_profile_audits_the_changed_fields_and_skips_a_no_op(tenant):
    with db.tenant_scope(tenant) as session:
        user = make(session, "ann@example.com")
        assert lifecycle.update_profile(
            session, user, name="Ann", email="ann@new.example", actor=SYSTEM
        )
        assert not lifecycle.update_profile(session, user, name="Ann", actor=SYSTEM)
        [entry] = entries(session, AuditAction.USER_UPDATE, user.id)
    assert entry.detail == {"fields": ["email", "name"]}
    assert entry.personal["before"] == {"name": "", "email": "ann@example.com"}


def test_suspend_ends_every_session_and_is_audited(tenant):
    with db.tenant_scope(tenant) as session:
        user = make(session, "ann@example.com")
        add_session(session, user)
        assert lifecycle.suspend_user(session, user, actor=SYSTEM, reason="Left")
        assert not lifecycle.suspend_user(session, user, actor=SYSTEM)
        assert session_count(session, user) == 0
        [entry] = entries(session, AuditAction.USER_SUSPEND, user.id)
    assert entry.detail == {"before": "active", "reason": "Left", "sessions_ended": 1}


def test_reactivate_returns_a_user_without_password_to_invited(tenant):
    with db.tenant_scope(tenant) as session:
        user = lifecycle.create_user(session, email="inv@example.com", actor=SYSTEM)
        lifecycle.suspend_user(session, user, actor=SYSTEM)
        assert lifecycle.reactivate_user(session, user, actor=SYSTEM)
        assert user.status == UserStatus.INVITED and user.status_reason is None
        [entry] = entries(session, AuditAction.USER_REACTIVATE, user.id)
    assert entry.detail == {"after": "invited"}


def test_a_user_cannot_suspend_or_delete_themselves(tenant):
    with db.tenant_scope(tenant) as session:
        user = make(session, "ann@example.com")
        me = Actor("user", str(user.id), user.email)
        with pytest.raises(AccountError, match="cannot suspend yourself"):
            lifecycle.suspend_user(session, user, actor=me)
        with pytest.raises(AccountError, match="cannot delete yourself"):
            lifecycle.delete_user(session, user, actor=me)


# ---- soft delete and restore --------------------------------------------------------------


def test_delete_user_is_soft_ends_sessions_and_voids_links(tenant):
    with db.tenant_scope(tenant) as session:
        user = invitations.invite_user(
            session, email="inv@example.com", actor=SYSTEM, base_url="http://x.localhost"
        )
        add_session(session, user)
        assert lifecycle.delete_user(session, user, actor=SYSTEM)
        assert not lifecycle.delete_user(session, user, actor=SYSTEM)
        assert user.status == UserStatus.DELETED and user.deleted_at is not None
        assert session_count(session, user) == 0
        assert not session.scalars(select(UserToken).where(UserToken.user_id == user.id)).all()
        deadline = lifecycle.restore_deadline(user)
        assert deadline == user.deleted_at + timedelta(days=lifecycle.USER_DELETE_GRACE_DAYS)
        [entry] = entries(session, AuditAction.USER_DELETE, user.id)
    assert entry.detail == {"before": "invited", "sessions_ended": 1}


def test_restore_within_grace_brings_back_the_previous_status(tenant):
    with db.tenant_scope(tenant) as session:
        user = make(session, "ann@example.com")
        lifecycle.suspend_user(session, user, actor=SYSTEM)
        lifecycle.delete_user(session, user, actor=SYSTEM)
        assert lifecycle.restore_user(session, user, actor=SYSTEM)
        assert user.status == UserStatus.SUSPENDED and user.deleted_at is None
        assert not lifecycle.restore_user(session, user, actor=SYSTEM)
        [entry] = entries(session, AuditAction.USER_RESTORE, user.id)
    assert entry.detail == {"after": "suspended"}


def test_restore_after_the_grace_period_is_refused(tenant):
    with db.tenant_scope(tenant) as session:
        user = make(session, "ann@example.com")
        lifecycle.delete_user(session, user, actor=SYSTEM)
        user.deleted_at = datetime.now(UTC) - timedelta(
            days=lifecycle.USER_DELETE_GRACE_DAYS, hours=1
        )
        with pytest.raises(AccountError, match="more than 30 days ago"):
            lifecycle.restore_user(session, user, actor=SYSTEM)
        assert user.status == UserStatus.DELETED
        assert not entries(session, AuditAction.USER_RESTORE)


# ---- sessions -----------------------------------------------------------------------------


def test_revoke_all_sessions_is_audited_only_when_something_ended(tenant):
    with db.tenant_scope(tenant) as session:
        user = make(session, "ann@example.com")
        assert lifecycle.revoke_all_sessions(session, user, actor=SYSTEM) == 0
        add_session(session, user)
        assert lifecycle.revoke_all_sessions(session, user, actor=SYSTEM) == 1
        [entry] = entries(session, AuditAction.SESSION_REVOKE, user.id)
    assert entry.detail == {"sessions": 1, "all": True}


def test_revoke_session_refuses_a_session_of_someone_else(tenant):
    with db.tenant_scope(tenant) as session:
        ann, bob = make(session, "ann@example.com"), make(session, "bob@example.com")
        add_session(session, bob)
        row = session.scalars(select(UserSession).where(UserSession.user_id == bob.id)).one()
        assert not lifecycle.revoke_session(session, ann.id, row.id, actor=SYSTEM)
        assert lifecycle.revoke_session(session, bob.id, row.id, actor=SYSTEM)
        [entry] = entries(session, AuditAction.SESSION_REVOKE, bob.id)
    assert entry.detail == {"session": row.id}
