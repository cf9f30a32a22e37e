"""Self-registration cannot fill a tenant's user quota (issue 11 §6): unconfirmed sign-ups do not
count toward max users, confirming one checks the quota, and they expire after 72 hours, when
a periodic job (run here on a real RQ worker) purges them in bounded, audited batches."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from rq import SimpleWorker
from rq.cron import CronScheduler
from sqlalchemy import select, update

from portal.accounts import invitations, lifecycle, links, settings
from portal.accounts.models import User, UserStatus, UserToken
from portal.accounts.validation import QuotaExceeded
from portal.compliance.audit import Actor, AuditAction, verify_chain
from portal.compliance.models import TenantAuditEntry
from portal.db import db
from portal.mail_models import OutboxMessage
from portal.queue import queues
from tests.conftest import PASSWORD

SYSTEM = Actor.system("test")
ANONYMOUS = Actor("anonymous", None, None, "203.0.113.9")
BASE_URL = "http://example.localhost:5000"


@pytest.fixture
def small(make_tenant):
    """A tenant allowing self-registration, limited to 2 users, with its admin (1 of 2)."""
    tenant = make_tenant(max_users=2)
    with db.tenant_scope(tenant) as session:
        settings.update_security_settings(session, actor=SYSTEM, self_registration=True)
        lifecycle.create_user(
            session,
            email="admin@example.com",
            password=PASSWORD,
            role_keys=["tenant_admin"],
            actor=SYSTEM,
        )
    return tenant


def sign_up(tenant, email: str) -> None:
    with db.tenant_scope(tenant) as session:
        invitations.register_user(session, email=email, name="", actor=ANONYMOUS, base_url=BASE_URL)


def link_token(tenant, email: str) -> str:
    with db.platform_scope() as session:
        mail = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.to_addr == email, OutboxMessage.tenant_slug == tenant.slug)
            .order_by(OutboxMessage.id.desc())
        ).first()
    return re.search(r"/invitation/(\S+)", mail.body).group(1)


def confirm(tenant, email: str):
    token = link_token(tenant, email)
    with db.tenant_scope(tenant) as session:
        return invitations.accept_invitation(
            session, token, password=PASSWORD, actor=Actor("user", None, email)
        )


def expire(tenant, *emails: str) -> None:
    with db.tenant_scope(tenant) as session:
        session.execute(
            update(User)
            .where(User.email.in_(emails))
            .values(registration_expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )


def status_of(tenant, email: str) -> str | None:
    with db.tenant_scope(tenant) as session:
        user = lifecycle.find_user(session, email)
        return user.status if user else None


def test_unconfirmed_sign_ups_do_not_block_an_admins_invitation_at_the_limit(small):
    for n in range(3):
        sign_up(small, f"signup{n}@example.com")
    with db.tenant_scope(small) as session:
        assert lifecycle.count_users(session) == 1
        pending = session.scalars(select(User).where(User.registration_expires_at.is_not(None)))
        assert len(pending.all()) == 3
        invitations.invite_user(
            session, email="chosen@example.com", actor=SYSTEM, base_url=BASE_URL
        )
        assert lifecycle.count_users(session) == 2
    with pytest.raises(QuotaExceeded):
        with db.tenant_scope(small) as session:
            invitations.invite_user(
                session, email="extra@example.com", actor=SYSTEM, base_url=BASE_URL
            )


def test_a_sign_up_expires_72_hours_after_it_was_made(small):
    sign_up(small, "later@example.com")
    with db.tenant_scope(small) as session:
        user = lifecycle.find_user(session, "later@example.com")
        left = user.registration_expires_at - datetime.now(UTC)
        assert timedelta(hours=71, minutes=59) < left <= timedelta(hours=72)
        [token] = session.scalars(select(UserToken).where(UserToken.user_id == user.id)).all()
        assert abs(token.expires_at - user.registration_expires_at) < timedelta(seconds=5)


def test_confirming_a_sign_up_when_the_organisation_is_full_is_refused_then_works_with_room(small):
    sign_up(small, "early@example.com")
    with db.tenant_scope(small) as session:
        invitations.invite_user(
            session, email="chosen@example.com", actor=SYSTEM, base_url=BASE_URL
        )
    with pytest.raises(
        QuotaExceeded, match="has reached its limit of 2 users, so your registration"
    ):
        confirm(small, "early@example.com")
    assert status_of(small, "early@example.com") == UserStatus.INVITED
    with db.tenant_scope(small) as session:
        lifecycle.delete_user(
            session, lifecycle.find_user(session, "chosen@example.com"), actor=SYSTEM
        )
    user = confirm(small, "early@example.com")
    assert user is not None and user.status == UserStatus.ACTIVE
    with db.tenant_scope(small) as session:
        confirmed = lifecycle.find_user(session, "early@example.com")
        assert not confirmed.registration_pending
        assert lifecycle.count_users(session) == 2
        entry = session.scalars(
            select(TenantAuditEntry)
            .where(TenantAuditEntry.action == AuditAction.USER_ACTIVATE)
            .order_by(TenantAuditEntry.seq.desc())
        ).first()
        assert entry.detail == {"via": "registration"}


def test_signing_up_at_the_limit_mails_a_notice_instead_of_a_link(small):
    with db.tenant_scope(small) as session:
        invitations.invite_user(
            session, email="chosen@example.com", actor=SYSTEM, base_url=BASE_URL
        )
    sign_up(small, "toolate@example.com")
    assert status_of(small, "toolate@example.com") is None
    with db.platform_scope() as session:
        [mail] = session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.to_addr == "toolate@example.com",
                OutboxMessage.tenant_slug == small.slug,
            )
        ).all()
    assert "cannot take new accounts" in mail.subject and "/invitation/" not in mail.body


def test_an_expired_sign_up_link_no_longer_works(small):
    sign_up(small, "slow@example.com")
    token = link_token(small, "slow@example.com")
    expire(small, "slow@example.com")
    with db.tenant_scope(small) as session:
        assert links.redeem_token(session, token, "invitation", consume=False) is None
        assert (
            invitations.accept_invitation(session, token, password=PASSWORD, actor=SYSTEM) is None
        )


def test_signing_up_again_sends_a_fresh_link_and_restarts_the_clock(small):
    sign_up(small, "again@example.com")
    first = link_token(small, "again@example.com")
    expire(small, "again@example.com")
    sign_up(small, "again@example.com")
    second = link_token(small, "again@example.com")
    assert second != first
    with db.tenant_scope(small) as session:
        user = lifecycle.find_user(session, "again@example.com")
        assert user.registration_expires_at > datetime.now(UTC) + timedelta(hours=71)
        assert links.redeem_token(session, first, "invitation", consume=False) is None
    assert confirm(small, "again@example.com").status == UserStatus.ACTIVE


def test_an_admin_resending_the_link_of_a_sign_up_gives_it_a_new_term(small):
    sign_up(small, "revived@example.com")
    expire(small, "revived@example.com")
    with db.tenant_scope(small) as session:
        user = lifecycle.find_user(session, "revived@example.com")
        invitations.resend_invitation(session, user, actor=SYSTEM, base_url=BASE_URL)
        assert user.registration_expires_at > datetime.now(UTC) + timedelta(hours=71)
    assert confirm(small, "revived@example.com").status == UserStatus.ACTIVE


def test_an_admins_invitation_never_expires_as_a_sign_up(small):
    with db.tenant_scope(small) as session:
        invited = invitations.invite_user(
            session, email="chosen@example.com", actor=SYSTEM, base_url=BASE_URL
        )
        assert invited.registration_expires_at is None
        assert invitations.purge_expired_registrations(session, actor=SYSTEM) == 0


def test_the_purge_service_removes_only_expired_sign_ups_in_bounded_batches(small):
    for n in range(5):
        sign_up(small, f"gone{n}@example.com")
    sign_up(small, "fresh@example.com")
    expire(small, *[f"gone{n}@example.com" for n in range(5)])
    with db.tenant_scope(small) as session:
        assert invitations.purge_expired_registrations(session, actor=SYSTEM, limit=2) == 2
    with db.tenant_scope(small) as session:
        assert invitations.purge_expired_registrations(session, actor=SYSTEM, limit=10) == 3
        assert invitations.purge_expired_registrations(session, actor=SYSTEM) == 0
        left = session.scalars(select(User.email).order_by(User.email)).all()
        assert left == ["admin@example.com", "fresh@example.com"]


def test_the_purge_job_runs_on_a_real_rq_worker_audited_in_bounded_batches(small, make_tenant):
    from jobs.accounts import purge_expired_registrations

    other = make_tenant()
    with db.tenant_scope(other) as session:
        settings.update_security_settings(session, actor=SYSTEM, self_registration=True)
    gone = [f"gone{n}@example.com" for n in range(3)]
    for email in gone:
        sign_up(small, email)
    sign_up(small, "fresh@example.com")
    sign_up(other, "elsewhere@example.com")
    expire(small, *gone)
    expire(other, "elsewhere@example.com")
    queue = queues.get("default")
    job = queue.enqueue(purge_expired_registrations, 2)  # batches of 2: 3 need two
    SimpleWorker([queue], connection=queues.redis).work(burst=True)
    job.refresh()
    assert job.get_status() == "finished", job.latest_result()
    assert job.return_value() >= 4  # other tests' tenants may have had some too
    for email in gone:
        assert status_of(small, email) is None
    assert status_of(small, "fresh@example.com") == UserStatus.INVITED
    assert status_of(other, "elsewhere@example.com") is None
    with db.tenant_scope(small) as session:
        entries = session.scalars(
            select(TenantAuditEntry).where(
                TenantAuditEntry.action == AuditAction.USER_REGISTRATION_EXPIRE
            )
        ).all()
        assert len(entries) == 3
        assert {e.actor_label for e in entries} == {"job:purge_expired_registrations"}
        assert all("expired_at" in e.detail for e in entries)
        assert verify_chain(session).ok
    # Running it again finds nothing more to do.
    job = queue.enqueue(purge_expired_registrations)
    SimpleWorker([queue], connection=queues.redis).work(burst=True)
    job.refresh()
    assert job.get_status() == "finished"
    assert status_of(small, "fresh@example.com") == UserStatus.INVITED


def test_the_purge_job_is_registered_with_the_cron_scheduler(app):
    scheduler = CronScheduler(connection=queues.redis, name="test-registration-purge")
    scheduler.load_config_from_file("jobs.cron")
    names = {job.name for job in scheduler.get_jobs()}
    assert "purge_expired_registrations" in names
