"""Never more than you hold (A10), in the services whatever the door: a person grants, creates
or widens only roles within their own permissions, never changes a role they hold, and changes
nothing about a user who holds a permission they lack. Each test tries the escalation and
asserts it is refused, leaves nothing changed and writes no audit entry."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.accounts import bulk, invitations, lifecycle, links, roles
from portal.accounts.models import Role, TokenPurpose, User, UserSession, UserStatus, UserToken
from portal.accounts.validation import AccountError
from portal.auth import services as auth
from portal.auth.staff_access import Visit
from portal.compliance.audit import Actor, AuditAction
from portal.compliance.models import TenantAuditEntry
from portal.db import db
from portal.mail_models import OutboxMessage
from portal.permissions import TENANT_PERMISSIONS
from tests.conftest import PASSWORD

SYSTEM = Actor.system("test")
VIEW = "accounts:user:view"
MANAGE = "accounts:user:manage"
ROLES_VIEW = "accounts:role:view"
ROLES_MANAGE = "accounts:role:manage"
SECURITY = "auth:settings:manage"
MFA_RESET = "auth:mfa:reset"
REVOKE = "auth:session:revoke"
BASE_URL = "http://example.localhost:5000"


def mails_to(tenant, address) -> list[OutboxMessage]:
    """Mail of `tenant` to `address` (the outbox is the platform's, shared by every test)."""
    with db.platform_scope() as session:
        return list(
            session.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.to_addr == address, OutboxMessage.tenant_slug == tenant.slug
                )
            )
        )


def audit_count(session) -> int:
    return len(session.scalars(select(TenantAuditEntry.id)).all())


def make_user(session, email, roles=(), **kwargs) -> User:
    return lifecycle.create_user(
        session, email=email, password=PASSWORD, role_keys=list(roles), actor=SYSTEM, **kwargs
    )


def make_role(session, name, permissions) -> str:
    return roles.create_role(session, name=name, permissions=permissions, actor=SYSTEM).key


def acting_as(session, user: User) -> Actor:
    """The actor a page makes for `user`: their own id, with the permissions they hold."""
    held = roles.permissions_for(session, user.id)
    return Actor("user", str(user.id), user.email, "198.51.100.7", permissions=held)


@pytest.fixture
def org(tenant):
    """A tenant with an admin, a user manager (view + manage users only, through a tenant role)
    and a member; yields (tenant, ids by name)."""
    with db.tenant_scope(tenant) as session:
        helpdesk = make_role(session, "User managers", [VIEW, MANAGE, REVOKE, MFA_RESET])
        ids = {
            "admin": make_user(session, "admin@example.com", ["tenant_admin"]).id,
            "manager": make_user(session, "manager@example.com", [helpdesk]).id,
            "member": make_user(session, "member@example.com").id,
            "officer": make_user(session, "officer@example.com", ["compliance_officer"]).id,
        }
        ids["helpdesk"] = helpdesk
    return tenant, ids


def refused(session, call, message: str) -> None:
    """`call` raises an AccountError containing `message`; nothing is recorded."""
    before = audit_count(session)
    with pytest.raises(AccountError, match=message):
        with session.begin_nested():
            call()
    assert audit_count(session) == before


# ---- granting roles --------------------------------------------------------------------------


def test_a_user_manager_cannot_give_themself_the_tenant_admin_role(org):
    tenant, ids = org
    with db.tenant_scope(tenant) as session:
        manager = session.get(User, ids["manager"])
        actor = acting_as(session, manager)
        refused(
            session,
            lambda: roles.set_user_roles(
                session, manager, [ids["helpdesk"], "tenant_admin"], actor=actor
            ),
            "You cannot give the role Tenant admin: it has permissions you do not hold",
        )
        assert roles.user_role_keys(session, manager.id) == [ids["helpdesk"]]
        assert SECURITY not in roles.permissions_for(session, manager.id)


def test_a_user_manager_cannot_give_a_member_a_role_beyond_their_own(org):
    tenant, ids = org
    with db.tenant_scope(tenant) as session:
        member = session.get(User, ids["member"])
        actor = acting_as(session, session.get(User, ids["manager"]))
        refused(
            session,
            lambda: roles.set_user_roles(session, member, ["compliance_officer"], actor=actor),
            "compliance:audit:view",
        )
        assert roles.user_role_keys(session, member.id) == []


def test_a_user_manager_can_give_a_role_within_their_own_permissions(org):
    tenant, ids = org
    with db.tenant_scope(tenant) as session:
        narrow = make_role(session, "Viewers", [VIEW])
        member = session.get(User, ids["member"])
        actor = acting_as(session, session.get(User, ids["manager"]))
        assert roles.set_user_roles(session, member, [narrow], actor=actor)
        assert roles.user_role_keys(session, member.id) == [narrow]


def test_inviting_with_a_role_beyond_your_own_is_refused_and_creates_nobody(org):
    tenant, ids = org
    with db.tenant_scope(tenant) as session:
        actor = acting_as(session, session.get(User, ids["manager"]))
        refused(
            session,
            lambda: invitations.invite_user(
                session,
                email="accomplice@example.com",
                role_keys=["tenant_admin"],
                actor=actor,
                base_url=BASE_URL,
            ),
            "You cannot give the role Tenant admin",
        )
        assert lifecycle.find_user(session, "accomplice@example.com") is None
    assert not mails_to(tenant, "accomplice@example.com")


def test_bulk_assigning_a_role_beyond_your_own_is_refused_for_everyone(org):
    tenant, ids = org
    with db.tenant_scope(tenant) as session:
        actor = acting_as(session, session.get(User, ids["manager"]))
        refused(
            session,
            lambda: bulk.bulk_apply(
                session,
                [ids["manager"], ids["member"]],
                "assign_role",
                actor=actor,
                role_key="tenant_admin",
            ),
            "You cannot give the role Tenant admin",
        )
        assert roles.user_role_keys(session, ids["member"]) == []


def test_bulk_actions_report_the_users_who_hold_more_and_change_the_others(org):
    tenant, ids = org
    with db.tenant_scope(tenant) as session:
        actor = acting_as(session, session.get(User, ids["manager"]))
        result = bulk.bulk_apply(
            session, [ids["admin"], ids["member"], ids["officer"]], "suspend", actor=actor
        )
        assert result.changed == 1
        refused_emails = sorted(email for email, _ in result.refused)
        assert refused_emails == ["admin@example.com", "officer@example.com"]
        assert all("hold permissions you do not" in why for _, why in result.refused)
        assert session.get(User, ids["admin"]).status == UserStatus.ACTIVE
        assert session.get(User, ids["member"]).status == UserStatus.SUSPENDED


# ---- changing roles --------------------------------------------------------------------------


@pytest.fixture
def role_manager(tenant):
    """A tenant whose "Role managers" role holds user and role management, but not security;
    a second role "Auditors" holds the audit trail. Yields (tenant, manager id, keys)."""
    with db.tenant_scope(tenant) as session:
        make_user(session, "admin@example.com", ["tenant_admin"])
        keys = {
            "own": make_role(session, "Role managers", [VIEW, MANAGE, ROLES_VIEW, ROLES_MANAGE]),
            "other": make_role(session, "Viewers", [VIEW]),
            "auditors": make_role(session, "Auditors", ["compliance:audit:view"]),
        }
        manager = make_user(session, "roles@example.com", [keys["own"]])
    return tenant, manager.id, keys


def role_row(session, key) -> Role:
    return session.scalars(select(Role).where(Role.key == key)).one()


def test_a_role_manager_cannot_widen_a_role_they_hold(role_manager):
    tenant, manager_id, keys = role_manager
    with db.tenant_scope(tenant) as session:
        actor = acting_as(session, session.get(User, manager_id))
        own = role_row(session, keys["own"])
        refused(
            session,
            lambda: roles.update_role(
                session,
                own,
                name=own.name,
                description="",
                permissions=[*own.permissions, SECURITY],
                actor=actor,
            ),
            "You hold the role Role managers, so someone else must change it",
        )
        assert SECURITY not in role_row(session, keys["own"]).permissions


def test_a_role_manager_cannot_add_a_permission_they_lack_to_another_role(role_manager):
    tenant, manager_id, keys = role_manager
    with db.tenant_scope(tenant) as session:
        actor = acting_as(session, session.get(User, manager_id))
        other = role_row(session, keys["other"])
        refused(
            session,
            lambda: roles.update_role(
                session,
                other,
                name="Viewers",
                description="",
                permissions=[VIEW, SECURITY],
                actor=actor,
            ),
            "You cannot give a role permissions you do not hold \\(auth:settings:manage\\)",
        )
        assert role_row(session, keys["other"]).permissions == [VIEW]


def test_a_role_manager_can_change_a_role_within_their_permissions(role_manager):
    tenant, manager_id, keys = role_manager
    with db.tenant_scope(tenant) as session:
        actor = acting_as(session, session.get(User, manager_id))
        other = role_row(session, keys["other"])
        assert roles.update_role(
            session, other, name="Viewers", description="", permissions=[VIEW, MANAGE], actor=actor
        )


def test_a_role_manager_cannot_create_a_role_with_a_permission_they_lack(role_manager):
    tenant, manager_id, _ = role_manager
    with db.tenant_scope(tenant) as session:
        actor = acting_as(session, session.get(User, manager_id))
        refused(
            session,
            lambda: roles.create_role(
                session, name="Escape hatch", permissions=[VIEW, SECURITY], actor=actor
            ),
            "You cannot give a role permissions you do not hold",
        )
        assert not session.scalars(select(Role).where(Role.name == "Escape hatch")).all()


def test_a_role_manager_cannot_change_or_delete_a_role_holding_more_than_they_do(role_manager):
    tenant, manager_id, keys = role_manager
    with db.tenant_scope(tenant) as session:
        actor = acting_as(session, session.get(User, manager_id))
        auditors = role_row(session, keys["auditors"])
        refused(
            session,
            lambda: roles.update_role(
                session, auditors, name="Auditors", description="", permissions=[], actor=actor
            ),
            "The role Auditors has permissions you do not hold",
        )
        refused(
            session,
            lambda: roles.delete_role(session, auditors, actor=actor),
            "The role Auditors has permissions you do not hold",
        )
        assert role_row(session, keys["auditors"]).permissions == ["compliance:audit:view"]


def test_a_role_manager_cannot_delete_a_role_they_hold(role_manager):
    tenant, manager_id, keys = role_manager
    with db.tenant_scope(tenant) as session:
        actor = acting_as(session, session.get(User, manager_id))
        refused(
            session,
            lambda: roles.delete_role(session, role_row(session, keys["own"]), actor=actor),
            "You hold the role Role managers",
        )


# ---- acting on a user who holds more ---------------------------------------------------------


def test_a_user_manager_cannot_change_the_email_of_a_tenant_admin(org):
    tenant, ids = org
    with db.tenant_scope(tenant) as session:
        admin = session.get(User, ids["admin"])
        actor = acting_as(session, session.get(User, ids["manager"]))
        refused(
            session,
            lambda: lifecycle.update_profile(
                session, admin, name="", email="attacker@evil.example", actor=actor
            ),
            "You cannot change the profile of this user: they hold permissions you do not",
        )
        assert session.get(User, ids["admin"]).email == "admin@example.com"


@pytest.mark.parametrize(
    "attempt, message",
    [
        (lambda s, u, a: lifecycle.suspend_user(s, u, actor=a), "You cannot suspend this user"),
        (lambda s, u, a: lifecycle.delete_user(s, u, actor=a), "You cannot delete this user"),
        (
            lambda s, u, a: auth.reset_mfa(s, u, actor=a),
            "You cannot reset two-factor authentication of this user",
        ),
        (
            lambda s, u, a: lifecycle.revoke_all_sessions(s, u, actor=a),
            "You cannot sign out this user",
        ),
        (
            lambda s, u, a: lifecycle.revoke_session(s, u.id, u._session_id, actor=a),
            "You cannot sign out this user",
        ),
        (
            lambda s, u, a: auth.forget_device(s, u.id, u._device_id, actor=a),
            "You cannot sign out this user",
        ),
    ],
    ids=["suspend", "delete", "reset-mfa", "revoke-sessions", "revoke-one-session", "forget"],
)
def test_a_user_manager_cannot_act_on_a_tenant_admin(org, attempt, message):
    tenant, ids = org
    with db.tenant_scope(tenant) as session:
        admin = session.get(User, ids["admin"])
        admin.mfa_secret, admin.mfa_enabled_at = "sealed", admin.created_at
        started = auth.start_user_session(
            session, admin, actor=SYSTEM, user_agent="Firefox/1", device_token=None
        )
        admin._session_id, admin._device_id = started.row.id, started.row.device_id
        actor = acting_as(session, session.get(User, ids["manager"]))
        refused(session, lambda: attempt(session, admin, actor), message)
        admin = session.get(User, ids["admin"])
        assert admin.status == UserStatus.ACTIVE and admin.mfa_enabled
        assert session.scalars(select(UserSession).where(UserSession.user_id == admin.id)).all()


def test_a_user_manager_cannot_reactivate_or_restore_a_tenant_admin(org):
    tenant, ids = org
    with db.tenant_scope(tenant) as session:
        other_admin = make_user(session, "second-admin@example.com", ["tenant_admin"])
        lifecycle.suspend_user(session, other_admin, actor=SYSTEM)
        actor = acting_as(session, session.get(User, ids["manager"]))
        refused(
            session,
            lambda: lifecycle.reactivate_user(session, other_admin, actor=actor),
            "You cannot reactivate this user",
        )
        lifecycle.delete_user(session, other_admin, actor=SYSTEM)
        refused(
            session,
            lambda: lifecycle.restore_user(session, other_admin, actor=actor),
            "You cannot restore this user",
        )
        assert other_admin.status == UserStatus.DELETED


def test_a_user_manager_can_act_on_a_member_and_on_themself(org):
    tenant, ids = org
    with db.tenant_scope(tenant) as session:
        manager = session.get(User, ids["manager"])
        member = session.get(User, ids["member"])
        actor = acting_as(session, manager)
        assert lifecycle.update_profile(
            session, member, name="Renamed", email="member2@example.com", actor=actor
        )
        assert lifecycle.suspend_user(session, member, actor=actor)
        assert lifecycle.update_profile(session, manager, name="Me", actor=actor)


def test_a_person_whose_permissions_the_door_did_not_give_holds_none(org):
    """Fail closed: an Actor for a person without permissions can give nothing."""
    tenant, ids = org
    with db.tenant_scope(tenant) as session:
        member = session.get(User, ids["member"])
        admin = session.get(User, ids["admin"])
        bare = Actor("user", str(ids["admin"]), "admin@example.com")
        refused(
            session,
            lambda: roles.set_user_roles(session, member, ["compliance_officer"], actor=bare),
            "You cannot give the role Compliance officer",
        )
        refused(
            session,
            lambda: lifecycle.suspend_user(session, admin, actor=Actor("user", "99999", "x")),
            "You cannot suspend this user",
        )


def test_the_system_actor_of_the_cli_and_jobs_holds_every_permission(org):
    tenant, ids = org
    assert roles.held_permissions(SYSTEM) == frozenset(TENANT_PERMISSIONS)
    with db.tenant_scope(tenant) as session:
        member = session.get(User, ids["member"])
        assert roles.set_user_roles(session, member, ["tenant_admin"], actor=SYSTEM)
        assert lifecycle.suspend_user(session, session.get(User, ids["admin"]), actor=SYSTEM)


# ---- staff visits ----------------------------------------------------------------------------


def visit_actor(role: str) -> Actor:
    visit = Visit(
        staff_id=7,
        email="tech@msp.example",
        name="Tech",
        role=role,
        tenant_slug="x",
        started_at=0.0,
    )
    return Actor("staff", "7", visit.email, permissions=visit.permissions)


def test_a_support_visit_cannot_grant_roles_create_roles_or_act_on_users(org):
    tenant, ids = org
    actor = visit_actor("support")
    with db.tenant_scope(tenant) as session:
        member = session.get(User, ids["member"])
        refused(
            session,
            lambda: roles.set_user_roles(session, member, ["tenant_admin"], actor=actor),
            "You cannot give the role Tenant admin",
        )
        refused(
            session,
            lambda: roles.create_role(session, name="Mine", permissions=[MANAGE], actor=actor),
            "permissions you do not hold",
        )
        refused(
            session,
            lambda: lifecycle.suspend_user(session, session.get(User, ids["admin"]), actor=actor),
            "You cannot suspend this user",
        )
        assert roles.user_role_keys(session, member.id) == []


def test_a_platform_admin_visit_holds_every_tenant_permission(org):
    tenant, ids = org
    actor = visit_actor("platform_admin")
    with db.tenant_scope(tenant) as session:
        member = session.get(User, ids["member"])
        assert roles.set_user_roles(session, member, ["tenant_admin"], actor=actor)


# ---- an email change: notice to the old address, links voided -------------------------------


def test_changing_an_email_mails_the_old_address_after_commit_and_voids_links(org):
    tenant, ids = org
    with db.tenant_scope(tenant) as session:
        member = session.get(User, ids["member"])
        links.issue_token(session, member, TokenPurpose.PASSWORD_RESET, 1)
    with db.tenant_scope(tenant) as session:
        member = session.get(User, ids["member"])
        admin = session.get(User, ids["admin"])
        assert lifecycle.update_profile(
            session,
            member,
            name="",
            email="member-new@example.com",
            actor=acting_as(session, admin),
        )
        assert not session.scalars(select(UserToken).where(UserToken.user_id == member.id)).all()
        assert not mails_to(tenant, "member@example.com")  # not before commit
        [entry] = session.scalars(
            select(TenantAuditEntry).where(TenantAuditEntry.action == AuditAction.USER_UPDATE)
        ).all()
        assert entry.detail == {"fields": ["email"], "links_voided": 1}
    [notice] = mails_to(tenant, "member@example.com")
    assert "member-new@example.com" in notice.body and "admin@example.com" in notice.body
    assert "changed" in notice.subject


def test_correcting_an_invited_users_email_sends_a_new_invitation_to_the_new_address(tenant):
    with db.tenant_scope(tenant) as session:
        invited = invitations.invite_user(
            session, email="typo@exmaple.com", actor=SYSTEM, base_url=BASE_URL
        )
    with db.tenant_scope(tenant) as session:
        invited = session.get(User, invited.id)
        lifecycle.update_profile(
            session, invited, name="", email="right@example.com", actor=SYSTEM, base_url=BASE_URL
        )
        [token] = session.scalars(select(UserToken).where(UserToken.user_id == invited.id)).all()
        assert token.purpose == TokenPurpose.INVITATION
    sent = mails_to(tenant, "right@example.com")
    assert len(sent) == 1 and f"{BASE_URL}/invitation/" in sent[0].body
