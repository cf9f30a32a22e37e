"""portal.accounts.invitations: invitation links (72 h, single use, mailed after commit),
resending, accepting, and self-registration that never reveals who has an account."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from portal.accounts import invitations, lifecycle, settings
from portal.accounts.models import TokenPurpose, User, UserStatus, UserToken
from portal.accounts.validation import AccountError
from portal.compliance.audit import AuditAction
from portal.db import db
from portal.mail_models import OutboxMessage
from portal.sessions import token_hash
from portal.validation import InputError
from tests.accounts.support import (
    SYSTEM,
    entries,
    make,
)
from tests.conftest import PASSWORD


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


# ---- invitations --------------------------------------------------------------------------


def invite(tenant, email="inv@example.com") -> User:
    with db.tenant_scope(tenant) as session:
        return invitations.invite_user(
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
        invitations.invite_user(
            session, email="ghost@example.com", actor=SYSTEM, base_url="http://x"
        )
        raise RuntimeError("the request failed after the invitation")
    assert mails(tenant, "ghost@example.com") == []


def test_an_invitation_link_works_once(tenant):
    user = invite(tenant)
    token = link_token(mails(tenant, user.email)[0])
    with db.tenant_scope(tenant) as session:
        accepted = invitations.accept_invitation(session, token, password=PASSWORD, actor=SYSTEM)
        assert accepted.id == user.id and accepted.status == UserStatus.ACTIVE
        assert accepted.password_hash and accepted.password_changed_at
        [entry] = entries(session, AuditAction.USER_ACTIVATE, user.id)
        assert entry.detail == {"via": "invitation"}
    with db.tenant_scope(tenant) as session:
        assert (
            invitations.accept_invitation(session, token, password=PASSWORD, actor=SYSTEM) is None
        )


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
        assert (
            invitations.accept_invitation(session, token, password=PASSWORD, actor=SYSTEM) is None
        )
        assert session.get(User, user.id).status == UserStatus.INVITED
        assert not entries(session, AuditAction.USER_ACTIVATE)


def test_resending_an_invitation_voids_the_earlier_link(tenant):
    user = invite(tenant)
    first = link_token(mails(tenant, user.email)[0])
    with db.tenant_scope(tenant) as session:
        invitations.resend_invitation(
            session, session.get(User, user.id), actor=SYSTEM, base_url="http://x.localhost"
        )
        assert [e.detail.get("resent") for e in entries(session, AuditAction.USER_INVITE)] == [
            None,
            True,
        ]
    second = link_token(mails(tenant, user.email)[1])
    with db.tenant_scope(tenant) as session:
        assert (
            invitations.accept_invitation(session, first, password=PASSWORD, actor=SYSTEM) is None
        )
        assert invitations.accept_invitation(session, second, password=PASSWORD, actor=SYSTEM)


def test_accepting_with_a_weak_password_keeps_the_link_usable(tenant):
    user = invite(tenant)
    token = link_token(mails(tenant, user.email)[0])
    with db.tenant_scope(tenant) as session, pytest.raises(InputError):
        invitations.accept_invitation(session, token, password="short", actor=SYSTEM)
    with db.tenant_scope(tenant) as session:
        assert invitations.accept_invitation(session, token, password=PASSWORD, actor=SYSTEM)


# ---- self-registration --------------------------------------------------------------------


def test_self_registration_is_refused_while_disabled(tenant):
    with db.tenant_scope(tenant) as session:
        with pytest.raises(AccountError, match="does not allow self-registration"):
            invitations.register_user(
                session, email="me@example.com", name="", actor=SYSTEM, base_url="http://x"
            )
        assert lifecycle.find_user(session, "me@example.com") is None


def test_self_registration_creates_an_invited_user_and_mails_a_link(tenant):
    with db.tenant_scope(tenant) as session:
        settings.update_security_settings(session, actor=SYSTEM, self_registration=True)
        user = invitations.register_user(
            session, email="me@example.com", name="Me", actor=SYSTEM, base_url="http://x"
        )
        assert user.status == UserStatus.INVITED
        assert entries(session, AuditAction.USER_REGISTER, user.id)
    [mail] = mails(tenant, "me@example.com")
    assert mail.kind == "invitation"


def test_registering_an_existing_email_sends_a_notice_and_answers_the_same(tenant):
    with db.tenant_scope(tenant) as session:
        settings.update_security_settings(session, actor=SYSTEM, self_registration=True)
        make(session, "taken@example.com")
    with db.tenant_scope(tenant) as session:
        result = invitations.register_user(
            session, email="TAKEN@example.com", name="Other", actor=SYSTEM, base_url="http://x"
        )
        assert result is None
        assert lifecycle.count_users(session) == 1
        assert not entries(session, AuditAction.USER_REGISTER)
    [notice] = mails(tenant, "taken@example.com")
    assert notice.kind == "notice" and "already have one" in notice.body
