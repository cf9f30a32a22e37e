"""portal.accounts.services: every change is audited; the last-admin guard, the user quota, bulk
actions with refusals, soft delete and restore, invitations and self-registration."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from portal.accounts import services
from portal.accounts.models import TokenPurpose, User, UserSession, UserStatus, UserToken
from portal.accounts.services import AccountError, QuotaExceeded
from portal.compliance.audit import Actor, AuditAction
from portal.compliance.models import TenantAuditEntry
from portal.db import db
from portal.mail import OutboxMessage
from portal.sessions import token_hash
from portal.validation import InputError
from tests.conftest import PASSWORD

SYSTEM = Actor.system("test")
ADMIN_PERMISSIONS = ["accounts:user:view", "accounts:user:manage", "accounts:role:manage"]


def entries(session, action, target_id=None) -> list[TenantAuditEntry]:
    query = select(TenantAuditEntry).where(TenantAuditEntry.action == action)
    if target_id is not None:
        query = query.where(
            TenantAuditEntry.target_type == "user", TenantAuditEntry.target_id == str(target_id)
        )
    return list(session.scalars(query.order_by(TenantAuditEntry.seq)))


def mails(tenant, to) -> list[OutboxMessage]:
    with db.platform_scope() as session:
        return list(
            session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.tenant_slug == tenant.slug, OutboxMessage.to_addr == to)
                .order_by(OutboxMessage.id)
            )
        )


def link_token(mail: OutboxMessage) -> str:
    return re.search(r"/invitation/(\S+)", mail.body).group(1)


def make(session, email, roles=(), **kwargs) -> User:
    return services.create_user(
        session, email=email, password=PASSWORD, role_keys=list(roles), actor=SYSTEM, **kwargs
    )


def add_session(session, user) -> None:
    session.add(
        UserSession(user_id=user.id, token_hash=token_hash(f"token-{user.id}-{user.email}"))
    )
    session.flush()


def session_count(session, user) -> int:
    return session.scalar(
        select(func.count()).select_from(UserSession).where(UserSession.user_id == user.id)
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
        services.delete_user(session, first, actor=SYSTEM)
        make(session, "three@example.com")
        with pytest.raises(QuotaExceeded):
            services.restore_user(session, first, actor=SYSTEM)
        assert first.status == UserStatus.DELETED
        assert not entries(session, AuditAction.USER_RESTORE)


# ---- profile, roles, lifecycle ------------------------------------------------------------


def test_update_profile_audits_the_changed_fields_and_skips_a_no_op(tenant):
    with db.tenant_scope(tenant) as session:
        user = make(session, "ann@example.com")
        assert services.update_profile(
            session, user, name="Ann", email="ann@new.example", actor=SYSTEM
        )
        assert not services.update_profile(session, user, name="Ann", actor=SYSTEM)
        [entry] = entries(session, AuditAction.USER_UPDATE, user.id)
    assert entry.detail == {"fields": ["email", "name"]}
    assert entry.personal["before"] == {"name": "", "email": "ann@example.com"}


def test_set_user_roles_audits_before_and_after(tenant):
    with db.tenant_scope(tenant) as session:
        user = make(session, "ann@example.com")
        assert services.set_user_roles(session, user, ["compliance_officer"], actor=SYSTEM)
        assert not services.set_user_roles(session, user, ["compliance_officer"], actor=SYSTEM)
        [entry] = entries(session, AuditAction.USER_ROLES_CHANGE, user.id)
    assert entry.detail == {"before": [], "after": ["compliance_officer"]}


def test_suspend_ends_every_session_and_is_audited(tenant):
    with db.tenant_scope(tenant) as session:
        user = make(session, "ann@example.com")
        add_session(session, user)
        assert services.suspend_user(session, user, actor=SYSTEM, reason="Left")
        assert not services.suspend_user(session, user, actor=SYSTEM)
        assert session_count(session, user) == 0
        [entry] = entries(session, AuditAction.USER_SUSPEND, user.id)
    assert entry.detail == {"before": "active", "reason": "Left", "sessions_ended": 1}


def test_reactivate_returns_a_user_without_password_to_invited(tenant):
    with db.tenant_scope(tenant) as session:
        user = services.create_user(session, email="inv@example.com", actor=SYSTEM)
        services.suspend_user(session, user, actor=SYSTEM)
        assert services.reactivate_user(session, user, actor=SYSTEM)
        assert user.status == UserStatus.INVITED and user.status_reason is None
        [entry] = entries(session, AuditAction.USER_REACTIVATE, user.id)
    assert entry.detail == {"after": "invited"}


def test_a_user_cannot_suspend_or_delete_themselves(tenant):
    with db.tenant_scope(tenant) as session:
        user = make(session, "ann@example.com")
        me = Actor("user", str(user.id), user.email)
        with pytest.raises(AccountError, match="cannot suspend yourself"):
            services.suspend_user(session, user, actor=me)
        with pytest.raises(AccountError, match="cannot delete yourself"):
            services.delete_user(session, user, actor=me)


# ---- the last administrator ---------------------------------------------------------------


def test_the_last_admin_cannot_be_suspended_deleted_or_demoted(tenant):
    with db.tenant_scope(tenant) as session:
        admin = make(session, "admin@example.com", ["tenant_admin"])
        for change in (
            lambda: services.suspend_user(session, admin, actor=SYSTEM),
            lambda: services.delete_user(session, admin, actor=SYSTEM),
            lambda: services.set_user_roles(session, admin, [], actor=SYSTEM),
        ):
            with pytest.raises(AccountError, match="without an administrator"):
                change()
        assert admin.status == UserStatus.ACTIVE
        assert services.user_role_keys(session, admin.id) == ["tenant_admin"]
        second = make(session, "second@example.com", ["tenant_admin"])
        assert services.suspend_user(session, admin, actor=SYSTEM)
        with pytest.raises(AccountError, match="without an administrator"):
            services.delete_user(session, second, actor=SYSTEM)


def test_a_custom_role_with_admin_powers_counts_for_the_guard(tenant):
    with db.tenant_scope(tenant) as session:
        role = services.create_role(
            session,
            name="Owners",
            permissions=[*ADMIN_PERMISSIONS, "accounts:role:view"],
            actor=SYSTEM,
        )
        make(session, "owner@example.com", [role.key])
        with pytest.raises(AccountError, match="without an administrator"):
            services.update_role(
                session,
                role,
                name="Owners",
                description="",
                permissions=["accounts:user:view"],
                actor=SYSTEM,
            )
        with pytest.raises(AccountError, match="without an administrator"):
            services.delete_role(session, role, actor=SYSTEM)
        assert not entries(session, AuditAction.ROLE_UPDATE)
        assert not entries(session, AuditAction.ROLE_DELETE)


# ---- soft delete and restore --------------------------------------------------------------


def test_delete_user_is_soft_ends_sessions_and_voids_links(tenant):
    with db.tenant_scope(tenant) as session:
        user = services.invite_user(
            session, email="inv@example.com", actor=SYSTEM, base_url="http://x.localhost"
        )
        add_session(session, user)
        assert services.delete_user(session, user, actor=SYSTEM)
        assert not services.delete_user(session, user, actor=SYSTEM)
        assert user.status == UserStatus.DELETED and user.deleted_at is not None
        assert session_count(session, user) == 0
        assert not session.scalars(select(UserToken).where(UserToken.user_id == user.id)).all()
        deadline = services.restore_deadline(user)
        assert deadline == user.deleted_at + timedelta(days=services.USER_DELETE_GRACE_DAYS)
        [entry] = entries(session, AuditAction.USER_DELETE, user.id)
    assert entry.detail == {"before": "invited", "sessions_ended": 1}


def test_restore_within_grace_brings_back_the_previous_status(tenant):
    with db.tenant_scope(tenant) as session:
        user = make(session, "ann@example.com")
        services.suspend_user(session, user, actor=SYSTEM)
        services.delete_user(session, user, actor=SYSTEM)
        assert services.restore_user(session, user, actor=SYSTEM)
        assert user.status == UserStatus.SUSPENDED and user.deleted_at is None
        assert not services.restore_user(session, user, actor=SYSTEM)
        [entry] = entries(session, AuditAction.USER_RESTORE, user.id)
    assert entry.detail == {"after": "suspended"}


def test_restore_after_the_grace_period_is_refused(tenant):
    with db.tenant_scope(tenant) as session:
        user = make(session, "ann@example.com")
        services.delete_user(session, user, actor=SYSTEM)
        user.deleted_at = datetime.now(UTC) - timedelta(
            days=services.USER_DELETE_GRACE_DAYS, hours=1
        )
        with pytest.raises(AccountError, match="more than 30 days ago"):
            services.restore_user(session, user, actor=SYSTEM)
        assert user.status == UserStatus.DELETED
        assert not entries(session, AuditAction.USER_RESTORE)


# ---- bulk ---------------------------------------------------------------------------------


def test_bulk_suspend_reports_a_refusal_and_changes_the_others(tenant):
    with db.tenant_scope(tenant) as session:
        admin = make(session, "admin@example.com", ["tenant_admin"])
        one = make(session, "one@example.com")
        two = make(session, "two@example.com")
        services.suspend_user(session, two, actor=SYSTEM)
        add_session(session, one)
        result = services.bulk_apply(
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
        result = services.bulk_apply(
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
        services.bulk_apply(session, ids, action, actor=SYSTEM, role_key=role_key)
    assert error.value.field == field


def test_bulk_revoke_and_delete_are_audited_per_user(tenant):
    with db.tenant_scope(tenant) as session:
        users = [make(session, f"u{i}@example.com") for i in range(3)]
        for user in users[:2]:
            add_session(session, user)
        result = services.bulk_apply(
            session, [u.id for u in users], "revoke_sessions", actor=SYSTEM
        )
        assert (result.changed, result.unchanged) == (2, 1)
        assert len(entries(session, AuditAction.SESSION_REVOKE)) == 2
        result = services.bulk_apply(session, [u.id for u in users], "delete", actor=SYSTEM)
        assert result.changed == 3 and len(entries(session, AuditAction.USER_DELETE)) == 3


# ---- sessions -----------------------------------------------------------------------------


def test_revoke_all_sessions_is_audited_only_when_something_ended(tenant):
    with db.tenant_scope(tenant) as session:
        user = make(session, "ann@example.com")
        assert services.revoke_all_sessions(session, user, actor=SYSTEM) == 0
        add_session(session, user)
        assert services.revoke_all_sessions(session, user, actor=SYSTEM) == 1
        [entry] = entries(session, AuditAction.SESSION_REVOKE, user.id)
    assert entry.detail == {"sessions": 1, "all": True}


def test_revoke_session_refuses_a_session_of_someone_else(tenant):
    with db.tenant_scope(tenant) as session:
        ann, bob = make(session, "ann@example.com"), make(session, "bob@example.com")
        add_session(session, bob)
        row = session.scalars(select(UserSession).where(UserSession.user_id == bob.id)).one()
        assert not services.revoke_session(session, ann.id, row.id, actor=SYSTEM)
        assert services.revoke_session(session, bob.id, row.id, actor=SYSTEM)
        [entry] = entries(session, AuditAction.SESSION_REVOKE, bob.id)
    assert entry.detail == {"session": row.id}


# ---- roles --------------------------------------------------------------------------------


def test_role_create_update_delete_are_audited(tenant):
    with db.tenant_scope(tenant) as session:
        role = services.create_role(
            session, name="Help desk", permissions=["auth:mfa:reset"], actor=SYSTEM
        )
        assert services.update_role(
            session, role, name="Service desk", description="x", permissions=[], actor=SYSTEM
        )
        assert not services.update_role(
            session, role, name="Service desk", description="x", permissions=[], actor=SYSTEM
        )
        services.delete_role(session, role, actor=SYSTEM)
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
        role = services.create_role(
            session, name="Viewers", permissions=["accounts:user:view"], actor=SYSTEM
        )
        user = make(session, "viewer@example.com", [role.key])
        assert "accounts:user:view" in services.permissions_for(session, user.id)
    browser = app.test_client()
    headers = {"Host": f"{tenant.slug}.localhost"}
    signed_in = browser.post(
        "/sign-in", data={"email": user.email, "password": PASSWORD}, headers=headers
    )
    assert signed_in.status_code == 303
    assert browser.get("/users", headers=headers).status_code == 200
    with db.tenant_scope(tenant) as session:
        role = session.merge(role)
        services.update_role(
            session, role, name="Viewers", description="", permissions=[], actor=SYSTEM
        )
        assert services.permissions_for(session, user.id) == frozenset()
    assert browser.get("/users", headers=headers).status_code == 403


# ---- security settings --------------------------------------------------------------------


def test_security_settings_changes_are_audited_and_tightening_starts_the_clock(tenant):
    with db.tenant_scope(tenant) as session:
        assert services.update_security_settings(
            session, actor=SYSTEM, mfa_policy="everyone", mfa_grace_days=3
        )
        assert not services.update_security_settings(session, actor=SYSTEM, mfa_grace_days=3)
        settings = services.security_settings(session)
        assert settings.mfa_policy_since is not None
        assert services.mfa_deadline(settings) == settings.mfa_policy_since + timedelta(days=3)
        [entry] = entries(session, AuditAction.SECURITY_SETTINGS_UPDATE)
    assert entry.detail["before"] == {"mfa_policy": "off", "mfa_grace_days": 7}
    assert entry.detail["after"]["mfa_policy"] == "everyone"


@pytest.mark.parametrize(
    "changes",
    [
        {"password_min_length": 7},
        {"password_min_length": 65},
        {"idle_timeout_minutes": 600, "absolute_timeout_minutes": 60},
        {"mfa_policy": "sometimes"},
        {"colour": "blue"},
    ],
)
def test_security_settings_refuse_values_out_of_range(tenant, changes):
    with db.tenant_scope(tenant) as session:
        with pytest.raises(AccountError):
            services.update_security_settings(session, actor=SYSTEM, **changes)
        assert not entries(session, AuditAction.SECURITY_SETTINGS_UPDATE)


# ---- invitations --------------------------------------------------------------------------


def invite(tenant, email="inv@example.com") -> User:
    with db.tenant_scope(tenant) as session:
        return services.invite_user(
            session,
            email=email,
            name="Invited",
            role_keys=["compliance_officer"],
            actor=SYSTEM,
            base_url=f"http://{tenant.slug}.localhost",
        )


def test_invitation_link_lasts_72_hours_and_is_mailed_after_commit(tenant):
    user = invite(tenant)
    with db.tenant_scope(tenant) as session:
        token = session.scalars(select(UserToken).where(UserToken.user_id == user.id)).one()
        [entry] = entries(session, AuditAction.USER_INVITE, user.id)
    assert token.purpose == TokenPurpose.INVITATION
    assert abs(token.expires_at - token.created_at - timedelta(hours=72)) < timedelta(seconds=5)
    assert entry.detail == {"status": "invited", "roles": ["compliance_officer"]}
    [mail] = mails(tenant, "inv@example.com")
    assert mail.kind == "invitation" and f"http://{tenant.slug}.localhost/invitation/" in mail.body
    assert token_hash(link_token(mail)) == token.token_hash


def test_a_rolled_back_invitation_sends_no_mail(tenant):
    with pytest.raises(RuntimeError), db.tenant_scope(tenant) as session:
        services.invite_user(session, email="ghost@example.com", actor=SYSTEM, base_url="http://x")
        raise RuntimeError("the request failed after the invitation")
    assert mails(tenant, "ghost@example.com") == []


def test_an_invitation_link_works_once(tenant):
    user = invite(tenant)
    token = link_token(mails(tenant, user.email)[0])
    with db.tenant_scope(tenant) as session:
        accepted = services.accept_invitation(session, token, password=PASSWORD, actor=SYSTEM)
        assert accepted.id == user.id and accepted.status == UserStatus.ACTIVE
        assert accepted.password_hash and accepted.password_changed_at
        [entry] = entries(session, AuditAction.USER_ACTIVATE, user.id)
        assert entry.detail == {"via": "invitation"}
    with db.tenant_scope(tenant) as session:
        assert services.accept_invitation(session, token, password=PASSWORD, actor=SYSTEM) is None


def test_an_expired_invitation_is_refused(tenant):
    user = invite(tenant)
    token = link_token(mails(tenant, user.email)[0])
    with db.tenant_scope(tenant) as session:
        session.execute(
            update(UserToken)
            .where(UserToken.user_id == user.id)
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    with db.tenant_scope(tenant) as session:
        assert services.accept_invitation(session, token, password=PASSWORD, actor=SYSTEM) is None
        assert session.get(User, user.id).status == UserStatus.INVITED
        assert not entries(session, AuditAction.USER_ACTIVATE)


def test_resending_an_invitation_voids_the_earlier_link(tenant):
    user = invite(tenant)
    first = link_token(mails(tenant, user.email)[0])
    with db.tenant_scope(tenant) as session:
        services.resend_invitation(
            session, session.get(User, user.id), actor=SYSTEM, base_url="http://x.localhost"
        )
        assert [e.detail.get("resent") for e in entries(session, AuditAction.USER_INVITE)] == [
            None,
            True,
        ]
    second = link_token(mails(tenant, user.email)[1])
    with db.tenant_scope(tenant) as session:
        assert services.accept_invitation(session, first, password=PASSWORD, actor=SYSTEM) is None
        assert services.accept_invitation(session, second, password=PASSWORD, actor=SYSTEM)


def test_accepting_with_a_weak_password_keeps_the_link_usable(tenant):
    user = invite(tenant)
    token = link_token(mails(tenant, user.email)[0])
    with db.tenant_scope(tenant) as session, pytest.raises(InputError):
        services.accept_invitation(session, token, password="short", actor=SYSTEM)
    with db.tenant_scope(tenant) as session:
        assert services.accept_invitation(session, token, password=PASSWORD, actor=SYSTEM)


# ---- self-registration --------------------------------------------------------------------


def test_self_registration_is_refused_while_disabled(tenant):
    with db.tenant_scope(tenant) as session:
        with pytest.raises(AccountError, match="does not allow self-registration"):
            services.register_user(
                session, email="me@example.com", name="", actor=SYSTEM, base_url="http://x"
            )
        assert services.find_user(session, "me@example.com") is None


def test_self_registration_creates_an_invited_user_and_mails_a_link(tenant):
    with db.tenant_scope(tenant) as session:
        services.update_security_settings(session, actor=SYSTEM, self_registration=True)
        user = services.register_user(
            session, email="me@example.com", name="Me", actor=SYSTEM, base_url="http://x"
        )
        assert user.status == UserStatus.INVITED
        assert entries(session, AuditAction.USER_REGISTER, user.id)
    [mail] = mails(tenant, "me@example.com")
    assert mail.kind == "invitation"


def test_registering_an_existing_email_sends_a_notice_and_answers_the_same(tenant):
    with db.tenant_scope(tenant) as session:
        services.update_security_settings(session, actor=SYSTEM, self_registration=True)
        make(session, "taken@example.com")
    with db.tenant_scope(tenant) as session:
        result = services.register_user(
            session, email="TAKEN@example.com", name="Other", actor=SYSTEM, base_url="http://x"
        )
        assert result is None
        assert services.count_users(session) == 1
        assert not entries(session, AuditAction.USER_REGISTER)
    [notice] = mails(tenant, "taken@example.com")
    assert notice.kind == "notice" and "already have one" in notice.body
