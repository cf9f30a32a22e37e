"""Two-factor authentication on the tenant site: the second sign-in step (TOTP and backup
codes, replay, clock window, throttling), enrolment from the Security page, backup codes,
turning it off, and the tenant's MFA policy (A5–A7)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from portal.accounts import lifecycle, settings
from portal.accounts.models import SecuritySettings, UserSession
from portal.auth.throttle import SignInThrottle
from portal.db import db
from portal.queue import queues
from tests.conftest import PASSWORD
from tests.site.support import (
    SYSTEM,
    Site,
    add_user,
    audit_entries,
    code_at,
    enable_mfa,
    forget_last_step,
    now,
    wait_for_fresh_step,
)

CODE_ERROR = b"That code is not right."


def account_failures(tenant, email) -> int:
    throttle = SignInThrottle(queues.redis, f"user:{tenant.slug}")
    key = throttle._keys(email, None)[0][0]
    return int(queues.redis.hget(key, "failures") or 0)


def session_methods(tenant, user_id) -> list[str]:
    with db.tenant_scope(tenant) as session:
        return list(
            session.scalars(select(UserSession.method).where(UserSession.user_id == user_id))
        )


@pytest.fixture
def mfa_user(tenant):
    user_id, email = add_user(tenant)
    secret, codes = enable_mfa(tenant, user_id)
    return user_id, email, secret, codes


# ---- the second step --------------------------------------------------------------------


def test_password_step_asks_for_a_code_without_signing_in(client, tenant, mfa_user):
    user_id, email, _, _ = mfa_user
    site = Site(client, tenant)
    response = site.sign_in(email)
    assert response.status_code == 303 and response.location == "/sign-in/verify"
    page = site.get("/sign-in/verify")
    assert page.status_code == 200 and b"Authentication code" in page.data
    home = site.get("/")  # the second step cannot be skipped
    assert home.status_code == 302 and home.location.startswith("/sign-in")
    assert session_methods(tenant, user_id) == []


def test_right_code_signs_in_with_a_new_session(client, tenant, mfa_user):
    user_id, email, secret, _ = mfa_user
    site = Site(client, tenant)
    site.sign_in(email, next="/account")
    pending = site.cookie()
    response = site.post("/sign-in/verify", {"code": code_at(secret)})
    assert response.status_code == 303 and response.location == "/account"
    assert site.cookie() != pending
    assert site.get("/account").status_code == 200
    assert session_methods(tenant, user_id) == ["totp"]
    assert audit_entries(tenant, target_id=user_id)[0].action == "auth:user:sign_in"
    site.set_cookie("session", pending)  # the cookie of the pending step signs nobody in
    assert site.get("/account").status_code == 302


def test_wrong_code_is_refused_counted_and_audited(client, tenant, mfa_user):
    user_id, email, secret, _ = mfa_user
    site = Site(client, tenant)
    site.sign_in(email)
    wrong = "000000" if code_at(secret) != "000000" else "111111"
    response = site.post("/sign-in/verify", {"code": wrong})
    assert response.status_code == 422 and CODE_ERROR in response.data
    assert account_failures(tenant, email) == 1
    assert audit_entries(tenant, target_id=user_id)[0].action == "auth:mfa:failed"


def test_missing_code_counts_as_a_failure(client, tenant, mfa_user):
    _, email, _, _ = mfa_user
    site = Site(client, tenant)
    site.sign_in(email)
    response = site.post("/sign-in/verify", {"code": ""})
    assert response.status_code == 422 and CODE_ERROR in response.data
    assert account_failures(tenant, email) == 1


def test_too_many_wrong_codes_drop_the_pending_sign_in(client, tenant, mfa_user):
    _, email, secret, _ = mfa_user
    site = Site(client, tenant)
    site.sign_in(email)
    for _ in range(4):
        assert site.post("/sign-in/verify", {"code": "12345"}).status_code == 422
    last = site.post("/sign-in/verify", {"code": "12345"})
    assert last.status_code == 303 and last.location == "/sign-in"
    again = site.post("/sign-in/verify", {"code": code_at(secret)})
    assert again.status_code == 303 and again.location == "/sign-in"
    assert site.get("/").status_code == 302


def test_replaying_the_pending_cookie_does_not_reset_the_wrong_code_count(client, tenant, mfa_user):
    """Issue 11 §6: the count lives on the server, keyed by the pending step's random id."""
    user_id, email, secret, _ = mfa_user
    site = Site(client, tenant, addr="198.51.100.40")
    site.sign_in(email)
    after_password = site.cookie()
    wrong = "000000" if code_at(secret) != "000000" else "111111"
    answers = []
    for _ in range(5):
        site.set_cookie("session", after_password)  # as if no wrong code had been counted
        answers.append(site.post("/sign-in/verify", {"code": wrong}).status_code)
    assert answers == [422, 422, 422, 422, 303]
    site.set_cookie("session", after_password)
    sixth = site.post("/sign-in/verify", {"code": wrong})
    assert sixth.status_code == 303 and sixth.location == "/sign-in"  # the step has ended
    site.set_cookie("session", after_password)
    right = site.post("/sign-in/verify", {"code": code_at(secret)})
    assert right.status_code == 303 and right.location == "/sign-in"
    assert site.get("/").status_code == 302
    assert session_methods(tenant, user_id) == []


def test_a_completed_second_step_cannot_be_replayed(client, tenant, mfa_user):
    user_id, email, _, codes = mfa_user
    site = Site(client, tenant, addr="198.51.100.41")
    site.sign_in(email)
    after_password = site.cookie()
    assert site.post("/sign-in/verify", {"code": codes[0]}).status_code == 303
    site.clear_cookies()
    site.set_cookie("session", after_password)
    replayed = site.post("/sign-in/verify", {"code": codes[1]})
    assert replayed.status_code == 303 and replayed.location == "/sign-in"
    assert session_methods(tenant, user_id) == ["backup_code"]


def test_pending_sign_in_expires(client, tenant, mfa_user, monkeypatch):
    from portal.site import sign_in_views

    _, email, secret, _ = mfa_user
    site = Site(client, tenant)
    site.sign_in(email)
    monkeypatch.setattr(sign_in_views, "MFA_PENDING_SECONDS", -1)
    response = site.post("/sign-in/verify", {"code": code_at(secret)})
    assert response.status_code == 303 and response.location == "/sign-in"
    assert site.get("/").status_code == 302


def test_verify_without_the_password_step_goes_to_sign_in(client, tenant):
    response = Site(client, tenant).get("/sign-in/verify")
    assert response.status_code == 303 and response.location == "/sign-in"


def test_user_suspended_between_the_steps_is_not_signed_in(client, tenant, mfa_user):
    user_id, email, secret, _ = mfa_user
    site = Site(client, tenant)
    site.sign_in(email)
    with db.tenant_scope(tenant) as session:
        lifecycle.suspend_user(session, lifecycle.get_user(session, user_id), actor=SYSTEM)
    response = site.post("/sign-in/verify", {"code": code_at(secret)})
    assert response.location == "/sign-in"
    assert session_methods(tenant, user_id) == []


def test_a_code_cannot_be_used_twice(client, tenant, mfa_user):
    _, email, secret, _ = mfa_user
    wait_for_fresh_step()
    code = code_at(secret)
    site = Site(client, tenant)
    assert site.sign_in(email, code=code).status_code == 303
    site.post("/sign-in/verify")  # nothing pending: harmless
    site.post("/sign-out")
    replay = site.sign_in(email, code=code)
    assert replay.status_code == 422 and CODE_ERROR in replay.data


def test_codes_one_step_either_side_are_accepted_and_older_ones_refused(client, tenant, mfa_user):
    user_id, email, secret, _ = mfa_user
    site = Site(client, tenant)
    wait_for_fresh_step()
    forget_last_step(tenant, user_id)
    assert site.sign_in(email, code=code_at(secret, -2)).status_code == 422
    forget_last_step(tenant, user_id)
    assert site.sign_in(email, code=code_at(secret, -1)).status_code == 303
    site.post("/sign-out")
    assert site.sign_in(email, code=code_at(secret, +1)).status_code == 303
    site.post("/sign-out")
    forget_last_step(tenant, user_id)
    assert site.sign_in(email, code=code_at(secret, +2)).status_code == 422


def test_backup_code_works_once(client, tenant, mfa_user):
    user_id, email, _, codes = mfa_user
    site = Site(client, tenant)
    response = site.sign_in(email, code=codes[0].upper().replace("-", " "))
    assert response.status_code == 303
    assert "Backup code used — 9 left" in site.get(response.location).get_data(as_text=True)
    assert session_methods(tenant, user_id) == ["backup_code"]
    assert audit_entries(tenant, "auth:mfa:backup_code_used", user_id)
    site.post("/sign-out")
    again = site.sign_in(email, code=codes[0])
    assert again.status_code == 422 and CODE_ERROR in again.data


def test_locked_account_refuses_even_the_right_code(client, tenant, mfa_user):
    _, email, secret, _ = mfa_user
    site = Site(client, tenant)
    site.sign_in(email)
    throttle = SignInThrottle(queues.redis, f"user:{tenant.slug}")
    for _ in range(20):
        throttle.failed(email, None)
    response = site.post("/sign-in/verify", {"code": code_at(secret)})
    assert response.status_code == 422 and CODE_ERROR in response.data


def test_completed_second_step_clears_the_account_count(client, tenant, mfa_user):
    _, email, secret, _ = mfa_user
    site = Site(client, tenant)
    site.sign_in(email, "wrong password here")
    site.sign_in(email)
    site.post("/sign-in/verify", {"code": "999999"})
    assert account_failures(tenant, email) == 2
    wait_for_fresh_step()
    assert site.post("/sign-in/verify", {"code": code_at(secret)}).status_code == 303
    assert account_failures(tenant, email) == 0


# ---- enrolment from the Security page ----------------------------------------------------


def secret_on(page) -> str:
    found = re.search(r'id="mfa-secret"[^>]*>([A-Z2-7 ]+)<', page.get_data(as_text=True))
    assert found, "no #mfa-secret on the page"
    return found.group(1).replace(" ", "")


def backup_codes_on(page) -> list[str]:
    html = page.get_data(as_text=True)
    listing = html[html.index('id="backup-codes"') :]
    listing = listing[: listing.index("</ol>")]
    return re.findall(r"<li[^>]*><code[^>]*>([0-9a-z-]+)</code></li>", listing)


def test_enrolment_shows_qr_and_key_then_ten_backup_codes_once(client, tenant):
    user_id, email = add_user(tenant)
    site = Site(client, tenant)
    site.sign_in(email)
    page = site.get("/account/security")
    assert b"Set up two-factor authentication" in page.data
    started = site.post("/account/mfa/start")
    assert started.status_code == 303
    setup = site.get("/account/security")
    html = setup.get_data(as_text=True)
    assert '<svg role="img"' in html and "style=" not in html.split("<svg", 1)[1].split("</svg>")[0]
    secret = secret_on(setup)
    wait_for_fresh_step()
    wrong = site.post("/account/mfa/confirm", {"code": "000000"})
    assert wrong.status_code == 422 and b"That code is not right" in wrong.data
    assert secret_on(wrong) == secret
    done = site.post("/account/mfa/confirm", {"code": code_at(secret)})
    assert done.status_code == 200
    codes = backup_codes_on(done)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert audit_entries(tenant, "auth:mfa:enrol", user_id)
    after = site.get("/account/security")
    assert b"10 backup codes left" in after.data and codes[0].encode() not in after.data
    assert b'id="mfa-secret"' not in after.data
    site.post("/sign-out")
    assert site.sign_in(email).location == "/sign-in/verify"
    assert site.post("/sign-in/verify", {"code": codes[3]}).status_code == 303


def test_start_again_gives_a_new_key(client, tenant):
    _, email = add_user(tenant)
    site = Site(client, tenant)
    site.sign_in(email)
    site.post("/account/mfa/start")
    first = secret_on(site.get("/account/security"))
    site.post("/account/mfa/start")
    assert secret_on(site.get("/account/security")) != first


def test_confirming_with_the_previous_key_fails(client, tenant):
    _, email = add_user(tenant)
    site = Site(client, tenant)
    site.sign_in(email)
    site.post("/account/mfa/start")
    old = secret_on(site.get("/account/security"))
    site.post("/account/mfa/start")
    wait_for_fresh_step()
    assert site.post("/account/mfa/confirm", {"code": code_at(old)}).status_code == 422


def test_regenerating_backup_codes_needs_the_password_and_voids_the_old_ones(
    client, tenant, mfa_user
):
    user_id, email, secret, old_codes = mfa_user
    site = Site(client, tenant)
    site.sign_in(email, code=old_codes[0])
    refused = site.post("/account/mfa/backup-codes", {"regenerate-password": "not my password"})
    assert refused.status_code == 422 and b"That is not your password." in refused.data
    response = site.post("/account/mfa/backup-codes", {"regenerate-password": PASSWORD})
    assert response.status_code == 200
    new_codes = backup_codes_on(response)
    assert len(new_codes) == 10 and not set(new_codes) & set(old_codes)
    assert audit_entries(tenant, "auth:mfa:backup_codes", user_id)
    site.post("/sign-out")
    assert site.sign_in(email, code=old_codes[1]).status_code == 422
    assert site.post("/sign-in/verify", {"code": new_codes[0]}).status_code == 303


def test_turning_mfa_off_needs_the_password(client, tenant, mfa_user):
    user_id, email, _, codes = mfa_user
    site = Site(client, tenant)
    site.sign_in(email, code=codes[0])
    wrong = site.post("/account/mfa/disable", {"disable-password": "not my password"})
    assert wrong.status_code == 422 and b"That is not your password." in wrong.data
    done = site.post("/account/mfa/disable", {"disable-password": PASSWORD})
    assert done.status_code == 303
    assert audit_entries(tenant, "auth:mfa:disable", user_id)
    site.post("/sign-out")
    assert site.sign_in(email).location == "/"


def test_turning_mfa_off_is_refused_when_the_policy_requires_it(client, tenant, mfa_user):
    _, email, _, codes = mfa_user
    with db.tenant_scope(tenant) as session:
        settings.update_security_settings(session, actor=SYSTEM, mfa_policy="everyone")
    site = Site(client, tenant)
    site.sign_in(email, code=codes[0])
    page = site.get("/account/security")
    assert b"so it can't be turned off" in page.data
    refused = site.post("/account/mfa/disable", {"disable-password": PASSWORD})
    assert refused.status_code == 422
    assert b"requires two-factor authentication" in refused.data
    with db.tenant_scope(tenant) as session:
        assert lifecycle.find_user(session, email).mfa_enabled


def test_turning_mfa_off_over_htmx_answers_with_the_panel(client, tenant, mfa_user):
    _, email, _, codes = mfa_user
    site = Site(client, tenant)
    site.sign_in(email, code=codes[0])
    response = site.post(
        "/account/mfa/disable",
        {"disable-password": "not my password"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith('<section id="mfa"') and "<html" not in body
    ok = site.post(
        "/account/mfa/disable", {"disable-password": PASSWORD}, headers={"HX-Request": "true"}
    )
    assert ok.status_code == 200 and "toast" in ok.headers["HX-Trigger"]
    assert b"Set up two-factor authentication" in ok.data


def test_wrong_passwords_on_the_security_page_count_towards_the_lock(client, tenant, mfa_user):
    _, email, _, codes = mfa_user
    site = Site(client, tenant)
    site.sign_in(email, code=codes[0])
    for _ in range(2):
        site.post("/account/mfa/backup-codes", {"regenerate-password": "guess one two"})
    assert account_failures(tenant, email) == 2


# ---- the tenant's policy ----------------------------------------------------------------


def require_mfa(tenant, *, grace_days: int, since_days_ago: int = 0) -> None:
    with db.tenant_scope(tenant) as session:
        settings.update_security_settings(
            session, actor=SYSTEM, mfa_policy="everyone", mfa_grace_days=grace_days
        )
        session.execute(
            update(SecuritySettings).values(mfa_policy_since=now() - timedelta(days=since_days_ago))
        )


def test_overdue_enrolment_sends_the_user_to_the_security_page(client, tenant):
    _, email = add_user(tenant)
    require_mfa(tenant, grace_days=7, since_days_ago=8)
    site = Site(client, tenant)
    assert site.sign_in(email).status_code == 303
    for path in ("/", "/account", "/account/sessions"):
        response = site.get(path)
        assert response.status_code == 302 and response.location == "/account/security", path
    page = site.get("/account/security")
    assert page.status_code == 200
    assert (
        f"{tenant.name} requires two-factor authentication. Set it up to continue.".encode()
        in page.data
    )
    assert site.post("/account/mfa/start").status_code == 303
    secret = secret_on(site.get("/account/security"))
    wait_for_fresh_step()
    assert site.post("/account/mfa/confirm", {"code": code_at(secret)}).status_code == 200
    assert site.get("/").status_code == 200


def test_grace_period_shows_a_banner_but_pages_work(client, tenant):
    _, email = add_user(tenant)
    require_mfa(tenant, grace_days=7, since_days_ago=1)
    site = Site(client, tenant)
    site.sign_in(email)
    home = site.get("/")
    assert home.status_code == 200
    assert f"{tenant.name} requires two-factor authentication. Set it up before".encode() in (
        home.data
    )
    assert site.get("/account").status_code == 200
    security = site.get("/account/security")
    assert b"Set it up before" in security.data and b"Set it up to continue" not in security.data


def test_admins_policy_leaves_members_alone(client, tenant):
    _, admin = add_user(tenant, roles=["tenant_admin"])
    _, member = add_user(tenant)
    with db.tenant_scope(tenant) as session:
        settings.update_security_settings(
            session, actor=SYSTEM, mfa_policy="admins", mfa_grace_days=0
        )
    site = Site(client, tenant)
    site.sign_in(member)
    assert site.get("/").status_code == 200
    site.post("/sign-out")
    site.sign_in(admin)
    assert site.get("/").location == "/account/security"


def test_signed_out_visitors_cannot_enrol(client, tenant):
    site = Site(client, tenant)
    for path in ("/account/mfa/start", "/account/mfa/confirm", "/account/mfa/disable"):
        response = site.post(path)
        assert response.status_code == 302 and response.location.startswith("/sign-in"), path


def test_a_password_change_between_the_steps_voids_the_pending_sign_in(client, tenant, mfa_user):
    from portal.auth import services as auth
    from tests.site.support import NEW_PASSWORD

    user_id, email, secret, _ = mfa_user
    site = Site(client, tenant)
    site.sign_in(email)
    with db.tenant_scope(tenant) as session:
        auth.change_password(
            session,
            lifecycle.get_user(session, user_id),
            current=PASSWORD,
            new=NEW_PASSWORD,
            actor=SYSTEM,
            sign_out_others=True,
            current_session=None,
        )
    response = site.post("/sign-in/verify", {"code": code_at(secret)})
    assert response.location == "/sign-in"
    assert session_methods(tenant, user_id) == []


def test_confirming_without_starting_says_to_start_again(client, tenant):
    _, email = add_user(tenant)
    site = Site(client, tenant)
    site.sign_in(email)
    response = site.post("/account/mfa/confirm", {"code": "123456"})
    assert response.status_code == 422 and b"Start again" in response.data


def test_starting_enrolment_with_mfa_on_changes_nothing(client, tenant, mfa_user):
    user_id, email, secret, codes = mfa_user
    site = Site(client, tenant)
    site.sign_in(email, code=codes[0])
    assert site.post("/account/mfa/start").status_code == 303
    with db.tenant_scope(tenant) as session:
        user = lifecycle.get_user(session, user_id)
        assert user.mfa_enabled and auth_secret(user) == secret


def auth_secret(user):
    from portal import crypto
    from portal.auth.services import TOTP_PURPOSE

    return crypto.unseal(user.mfa_secret, purpose=TOTP_PURPOSE)
