"""Tenant user authentication services (portal/auth/services.py), run in a tenant scope as the
views run them: sign-in steps, sessions and devices, passwords, MFA; each with its audit entry."""

from __future__ import annotations

import time
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select, update

from portal.accounts import lifecycle
from portal.accounts.models import BackupCode, Device, User, UserSession, UserToken
from portal.accounts.validation import AccountError
from portal.auth import services as auth
from portal.auth.throttle import SignInThrottle
from portal.compliance.audit import Actor
from portal.compliance.models import TenantAuditEntry
from portal.db import db
from portal.queue import queues
from tests.conftest import PASSWORD
from tests.site.support import add_user, last_mail, mail_count, now, wait_for_fresh_step

NEW = "a brand new passphrase for tests"
ADDR = "203.0.113.50"
ANONYMOUS = Actor("anonymous", None, None, ADDR)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def actor_for(user_id, email):
    return Actor("user", str(user_id), email, ADDR)


def last_entry(tenant) -> TenantAuditEntry:
    with db.tenant_scope(tenant) as session:
        return session.scalars(
            select(TenantAuditEntry).order_by(TenantAuditEntry.seq.desc())
        ).first()


def throttle_for(tenant) -> SignInThrottle:
    return SignInThrottle(queues.redis, f"user:{tenant.slug}")


def failures(tenant, email) -> int:
    key = throttle_for(tenant)._keys(email, None)[0][0]
    return int(queues.redis.hget(key, "failures") or 0)


def with_mfa(tenant, user_id) -> tuple[str, list[str]]:
    wait_for_fresh_step()
    with db.tenant_scope(tenant) as session:
        user = session.get(User, user_id)
        secret = auth.start_mfa_enrolment(session, user)
        previous = pyotp.TOTP(secret).at(time.time() - 30)
        codes = auth.confirm_mfa_enrolment(session, user, previous, actor=Actor.system("test"))
    return secret, codes


def start(tenant, user_id, device_token=None, agent=FIREFOX, method="password"):
    with db.tenant_scope(tenant) as session:
        user = session.get(User, user_id)
        started = auth.start_user_session(
            session,
            user,
            actor=actor_for(user.id, user.email),
            user_agent=agent,
            device_token=device_token,
            method=method,
        )
        return started.token, started.row.id, started.device_token, started.new_device


# ---- password step ------------------------------------------------------------------------


def test_password_step_returns_the_active_user_and_clears_their_failures(tenant):
    user_id, email = add_user(tenant)
    throttle = throttle_for(tenant)
    throttle.failed(email, ADDR)
    with db.tenant_scope(tenant) as session:
        user = auth.check_password_step(
            session, email.upper(), PASSWORD, actor=ANONYMOUS, throttle=throttle
        )
        assert user is not None and user.id == user_id
    assert failures(tenant, email) == 0


@pytest.mark.parametrize("case", ["wrong", "unknown", "suspended", "invited"])
def test_password_step_refuses_and_audits(tenant, case):
    user_id, email = add_user(tenant, status="invited" if case == "invited" else "active")
    if case == "suspended":
        with db.tenant_scope(tenant) as session:
            lifecycle.suspend_user(session, session.get(User, user_id), actor=Actor.system("t"))
    login = "ghost@example.com" if case == "unknown" else email
    password = "wrong password here" if case == "wrong" else PASSWORD
    with db.tenant_scope(tenant) as session:
        assert (
            auth.check_password_step(
                session, login, password, actor=ANONYMOUS, throttle=throttle_for(tenant)
            )
            is None
        )
    entry = last_entry(tenant)
    assert entry.action == "auth:user:sign_in_failed"
    assert (
        entry.detail["reason"]
        == {
            "wrong": "bad_credentials",
            "unknown": "bad_credentials",
            "suspended": "suspended",
            "invited": "invited",
        }[case]
    )
    assert entry.personal == {"email": login} and entry.client_addr == ADDR
    assert failures(tenant, login) == 1


def test_password_step_while_locked_refuses_the_right_password(tenant):
    user_id, email = add_user(tenant)
    throttle = throttle_for(tenant)
    for _ in range(20):
        throttle.failed(email, None)
    with db.tenant_scope(tenant) as session:
        assert (
            auth.check_password_step(session, email, PASSWORD, actor=ANONYMOUS, throttle=throttle)
            is None
        )
    entry = last_entry(tenant)
    assert entry.action == "auth:user:sign_in_locked" and entry.target_id == str(user_id)
    assert failures(tenant, email) == 20  # waiting attempts are not counted again


def test_password_step_of_an_mfa_user_keeps_the_count_until_the_code(tenant):
    user_id, email = add_user(tenant)
    secret, _ = with_mfa(tenant, user_id)
    throttle = throttle_for(tenant)
    throttle.failed(email, ADDR)
    with db.tenant_scope(tenant) as session:
        user = auth.check_password_step(
            session, email, PASSWORD, actor=ANONYMOUS, throttle=throttle
        )
        assert user is not None
        assert failures(tenant, email) == 1
        assert (
            auth.check_second_factor(
                session, user, pyotp.TOTP(secret).now(), actor=ANONYMOUS, throttle=throttle
            )
            == "totp"
        )
    assert failures(tenant, email) == 0


# ---- second factor ------------------------------------------------------------------------


def test_second_factor_accepts_a_code_once(tenant):
    user_id, email = add_user(tenant)
    secret, _ = with_mfa(tenant, user_id)
    code = pyotp.TOTP(secret).now()
    with db.tenant_scope(tenant) as session:
        user = session.get(User, user_id)
        assert (
            auth.check_second_factor(session, user, code, actor=ANONYMOUS, throttle=None) == "totp"
        )
    with db.tenant_scope(tenant) as session:
        user = session.get(User, user_id)
        assert (
            auth.check_second_factor(
                session, user, code, actor=ANONYMOUS, throttle=throttle_for(tenant)
            )
            is None
        )
    entry = last_entry(tenant)
    assert entry.action == "auth:mfa:failed" and entry.detail == {
        "reason": "bad_code",
        "step": "mfa",
    }
    assert failures(tenant, email) == 1


def test_second_factor_accepts_a_backup_code_once(tenant):
    user_id, _ = add_user(tenant)
    _, codes = with_mfa(tenant, user_id)
    with db.tenant_scope(tenant) as session:
        user = session.get(User, user_id)
        assert (
            auth.check_second_factor(session, user, codes[2], actor=ANONYMOUS, throttle=None)
            == "backup_code"
        )
        assert auth.backup_codes_left(session, user_id) == 9
    entry = last_entry(tenant)
    assert entry.action == "auth:mfa:backup_code_used" and entry.detail == {"left": 9}
    with db.tenant_scope(tenant) as session:
        user = session.get(User, user_id)
        assert (
            auth.check_second_factor(session, user, codes[2], actor=ANONYMOUS, throttle=None)
            is None
        )


def test_second_factor_of_a_user_without_mfa_is_never_right(tenant):
    user_id, _ = add_user(tenant)
    with db.tenant_scope(tenant) as session:
        user = session.get(User, user_id)
        assert (
            auth.check_second_factor(session, user, "123456", actor=ANONYMOUS, throttle=None)
            is None
        )


# ---- sessions and devices -----------------------------------------------------------------


def test_start_user_session_records_a_new_device_then_recognises_it(tenant):
    user_id, email = add_user(tenant)
    token1, session1, device_token, new = start(tenant, user_id)
    assert new is True
    entry = last_entry(tenant)
    assert entry.action == "auth:user:sign_in" and entry.detail["method"] == "password"
    token2, session2, device_again, new_again = start(tenant, user_id, device_token=device_token)
    assert (new_again, device_again) == (False, device_token)
    assert token1 != token2 and session1 != session2
    with db.tenant_scope(tenant) as session:
        devices = session.scalars(select(Device).where(Device.user_id == user_id)).all()
        assert [d.label for d in devices] == ["Firefox on Linux"]
        user = session.get(User, user_id)
        assert user.sign_in_count == 2 and user.last_sign_in_addr == ADDR


def test_a_new_device_after_the_first_sign_in_sends_a_notice(tenant):
    user_id, email = add_user(tenant)
    start(tenant, user_id)
    assert mail_count(email) == 0  # the very first sign-in is not news
    start(tenant, user_id, agent="curl/8.0")
    assert "new sign-in" in last_mail(email).subject


def test_a_device_token_of_another_user_is_not_theirs(tenant):
    first, _ = add_user(tenant)
    second, _ = add_user(tenant)
    _, _, device_token, _ = start(tenant, first)
    assert start(tenant, second, device_token=device_token)[3] is True


@pytest.mark.parametrize(
    ("agent", "label"),
    [
        (FIREFOX, "Firefox on Linux"),
        (
            "Mozilla/5.0 (Windows NT 10.0) AppleWebKit Chrome/126.0 Safari/537.36 Edg/126.0",
            "Edge on Windows",
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit Version/17.5 Safari/605",
            "Safari on macOS",
        ),
        ("curl/8.5.0", "curl"),
        (None, "Browser"),
    ],
)
def test_describe_agent(agent, label):
    assert auth.describe_agent(agent) == label


def test_end_user_session_deletes_it_and_audits(tenant):
    user_id, _ = add_user(tenant)
    token, session_id, _, _ = start(tenant, user_id)
    with db.tenant_scope(tenant) as session:
        auth.end_user_session(session, token, actor=actor_for(user_id, "x"))
        assert auth.load_user_session(session, token) is None
        auth.end_user_session(session, "no-such-token", actor=ANONYMOUS)  # harmless
    entry = last_entry(tenant)
    assert entry.action == "auth:user:sign_out" and entry.detail == {"session": session_id}


def test_load_user_session_applies_timeouts_and_status(tenant):
    user_id, _ = add_user(tenant)
    token, session_id, _, _ = start(tenant, user_id)
    with db.tenant_scope(tenant) as session:
        row = auth.load_user_session(session, token)
        assert row.id == user_id and row.session_id == session_id
        session.execute(update(UserSession).values(last_seen_at=now() - timedelta(minutes=31)))
        assert auth.load_user_session(session, token) is None  # default idle 30 min
        assert session.get(UserSession, session_id) is None
    token, _, _, _ = start(tenant, user_id)
    with db.tenant_scope(tenant) as session:
        session.execute(update(User).where(User.id == user_id).values(status="suspended"))
        assert auth.load_user_session(session, token) is None


def test_forget_device_ends_its_sessions_only_for_its_owner(tenant):
    user_id, _ = add_user(tenant)
    other_id, _ = add_user(tenant)
    start(tenant, user_id)
    with db.tenant_scope(tenant) as session:
        device = auth.user_devices(session, user_id)[0]
        assert auth.forget_device(session, other_id, device.id, actor=ANONYMOUS) is False
        assert auth.forget_device(session, user_id, device.id, actor=actor_for(user_id, "x"))
        assert auth.user_sessions(session, user_id) == []
        assert auth.user_devices(session, user_id) == []
    entry = last_entry(tenant)
    assert entry.action == "auth:session:revoke" and entry.detail["forgotten"] is True


# ---- passwords ----------------------------------------------------------------------------


def test_change_password_requires_the_current_one(tenant):
    user_id, email = add_user(tenant)
    with db.tenant_scope(tenant) as session:
        user = session.get(User, user_id)
        with pytest.raises(AccountError) as wrong:
            auth.change_password(
                session,
                user,
                current="nope nope nope",
                new=NEW,
                actor=actor_for(user_id, email),
                sign_out_others=True,
                current_session=None,
            )
        assert wrong.value.field == "current_password"
        with pytest.raises(AccountError) as same:
            auth.change_password(
                session,
                user,
                current=PASSWORD,
                new=PASSWORD,
                actor=actor_for(user_id, email),
                sign_out_others=True,
                current_session=None,
            )
        assert same.value.field == "new_password"
        with pytest.raises(AccountError) as weak:
            auth.change_password(
                session,
                user,
                current=PASSWORD,
                new="short",
                actor=actor_for(user_id, email),
                sign_out_others=True,
                current_session=None,
            )
        assert weak.value.field == "new_password"


def test_change_password_ends_other_sessions_and_tells_the_user(tenant):
    user_id, email = add_user(tenant)
    _, keep, _, _ = start(tenant, user_id)
    start(tenant, user_id)
    start(tenant, user_id)
    with db.tenant_scope(tenant) as session:
        ended = auth.change_password(
            session,
            session.get(User, user_id),
            current=PASSWORD,
            new=NEW,
            actor=actor_for(user_id, email),
            sign_out_others=True,
            current_session=keep,
        )
        assert ended == 2
        assert [s.id for s in auth.user_sessions(session, user_id)] == [keep]
    entry = last_entry(tenant)
    assert entry.action == "auth:password:change"
    assert entry.detail == {"signed_out_others": True, "sessions_ended": 2}
    assert "password was changed" in last_mail(email).subject


def test_password_reset_request_for_unknown_address_sends_nothing(tenant):
    with db.tenant_scope(tenant) as session:
        auth.request_password_reset(
            session, "ghost@example.com", actor=ANONYMOUS, base_url="http://x.localhost/"
        )
    entry = last_entry(tenant)
    assert entry.action == "auth:password:reset_request" and entry.detail == {"sent": False}
    assert entry.target_id is None and mail_count("ghost@example.com") == 0


def test_password_reset_link_is_single_use_and_ends_sessions(tenant):
    user_id, email = add_user(tenant)
    start(tenant, user_id)
    with db.tenant_scope(tenant) as session:
        auth.request_password_reset(
            session, email, actor=ANONYMOUS, base_url=f"http://{tenant.slug}.localhost/"
        )
    body = last_mail(email).body
    token = body.split(f"http://{tenant.slug}.localhost/reset-password/")[1].split()[0]
    with db.tenant_scope(tenant) as session:
        assert auth.reset_token_valid(session, token)
        with pytest.raises(AccountError):
            auth.reset_password(session, token, "short", actor=ANONYMOUS)
        assert auth.reset_token_valid(session, token)  # a refused password leaves the link
        user = auth.reset_password(session, token, NEW, actor=ANONYMOUS)
        assert user.id == user_id
        assert auth.user_sessions(session, user_id) == []
        assert auth.reset_password(session, token, NEW + "!", actor=ANONYMOUS) is None
        assert not auth.reset_token_valid(session, token)
    entry = last_entry(tenant)
    assert entry.action == "auth:password:reset" and entry.actor_id == str(user_id)
    assert entry.detail == {"sessions_ended": 1}


def test_expired_reset_link_is_invalid(tenant):
    user_id, email = add_user(tenant)
    with db.tenant_scope(tenant) as session:
        auth.request_password_reset(session, email, actor=ANONYMOUS, base_url="http://h/")
    token = last_mail(email).body.split("/reset-password/")[1].split()[0]
    with db.tenant_scope(tenant) as session:
        session.execute(update(UserToken).values(expires_at=now() - timedelta(seconds=1)))
        assert not auth.reset_token_valid(session, token)
        assert auth.reset_password(session, token, NEW, actor=ANONYMOUS) is None


# ---- MFA ----------------------------------------------------------------------------------


def test_enrolment_needs_a_right_code_and_gives_ten_codes(tenant):
    user_id, email = add_user(tenant)
    with db.tenant_scope(tenant) as session:
        user = session.get(User, user_id)
        secret = auth.start_mfa_enrolment(session, user)
        assert auth.pending_mfa_secret(user) == secret and not user.mfa_enabled
        with pytest.raises(AccountError) as wrong:
            auth.confirm_mfa_enrolment(session, user, "000000", actor=actor_for(user_id, email))
        assert wrong.value.field == "code"
        codes = auth.confirm_mfa_enrolment(
            session, user, pyotp.TOTP(secret).now(), actor=actor_for(user_id, email)
        )
        assert len(codes) == 10 and user.mfa_enabled
        assert auth.pending_mfa_secret(user) is None
        assert auth.backup_codes_left(session, user_id) == 10
        with pytest.raises(AccountError):
            auth.start_mfa_enrolment(session, user)
    assert last_entry(tenant).action == "auth:mfa:enrol"
    assert "turned on" in last_mail(email).subject


def test_regenerating_backup_codes_voids_the_old_ones(tenant):
    user_id, email = add_user(tenant)
    _, old = with_mfa(tenant, user_id)
    with db.tenant_scope(tenant) as session:
        user = session.get(User, user_id)
        new = auth.regenerate_backup_codes(session, user, actor=actor_for(user_id, email))
        assert not set(new) & set(old)
        stored = session.scalars(select(BackupCode).where(BackupCode.user_id == user_id)).all()
        assert len(stored) == 10
        assert (
            auth.check_second_factor(session, user, old[0], actor=ANONYMOUS, throttle=None) is None
        )
        assert (
            auth.check_second_factor(session, user, new[0], actor=ANONYMOUS, throttle=None)
            == "backup_code"
        )
    plain = add_user(tenant)[0]
    with db.tenant_scope(tenant) as session, pytest.raises(AccountError):
        auth.regenerate_backup_codes(session, session.get(User, plain), actor=ANONYMOUS)


def test_disable_mfa_needs_the_password_and_is_refused_when_required(tenant):
    user_id, email = add_user(tenant)
    with_mfa(tenant, user_id)
    me = actor_for(user_id, email)
    with db.tenant_scope(tenant) as session:
        user = session.get(User, user_id)
        with pytest.raises(AccountError) as wrong:
            auth.disable_mfa(session, user, password="nope nope", actor=me, required=False)
        assert wrong.value.field == "password"
        with pytest.raises(AccountError, match="requires two-factor"):
            auth.disable_mfa(session, user, password=PASSWORD, actor=me, required=True)
        assert user.mfa_enabled
        assert auth.disable_mfa(session, user, password=PASSWORD, actor=me, required=False)
        assert not user.mfa_enabled and auth.backup_codes_left(session, user_id) == 0
        assert auth.disable_mfa(session, user, password=PASSWORD, actor=me, required=False) is False
    assert last_entry(tenant).action == "auth:mfa:disable"


def test_reset_mfa_by_an_administrator(tenant):
    user_id, email = add_user(tenant)
    with_mfa(tenant, user_id)
    admin = Actor("user", "999", "admin@example.com", ADDR)
    with db.tenant_scope(tenant) as session:
        user = session.get(User, user_id)
        assert auth.reset_mfa(session, user, actor=admin)
        assert not user.mfa_enabled and user.mfa_secret is None
        assert auth.reset_mfa(session, user, actor=admin) is False
    entry = last_entry(tenant)
    assert entry.action == "auth:mfa:reset" and entry.actor_id == "999"
    assert "was reset" in last_mail(email).subject
