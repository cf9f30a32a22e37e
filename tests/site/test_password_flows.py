"""Forgotten passwords: the same answer for every address, links by mail that work once for an
hour and never sign in (so MFA still applies), and limits against mail bombing (A6)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from portal.accounts.models import UserToken
from portal.db import db
from tests.conftest import PASSWORD
from tests.site.support import (
    NEW_PASSWORD,
    Site,
    add_user,
    audit_entries,
    code_at,
    enable_mfa,
    link_in_mail,
    mail_count,
    normalised,
    now,
    session_count,
)

SENT = b"If an account exists for that address, we sent a link. It works for one hour."


def ask_reset(site, email):
    return site.post("/forgot-password", {"email": email})


def test_forgot_password_answers_the_same_for_known_and_unknown_addresses(client, tenant):
    user_id, email = add_user(tenant)
    site = Site(client, tenant)
    ghost = "nobody-" + email
    known, unknown = ask_reset(site, email), ask_reset(site, ghost)
    assert known.status_code == unknown.status_code == 200
    assert SENT in known.data
    assert normalised(known.data, email) == normalised(unknown.data, ghost)
    assert mail_count(email) == 1 and mail_count(ghost) == 0
    assert audit_entries(tenant, target_id=user_id)[0].action == "auth:password:reset_request"


def test_forgot_password_sends_nothing_to_suspended_or_invited_users(client, tenant):
    _, invited = add_user(tenant, status="invited", password=None)
    site = Site(client, tenant)
    assert SENT in ask_reset(site, invited).data
    assert mail_count(invited) == 0


def test_forgot_password_without_an_email_asks_for_one(client, tenant):
    response = Site(client, tenant).post("/forgot-password", {"email": ""})
    assert response.status_code == 422 and b"Enter your email address." in response.data


def test_forgot_password_is_limited_per_email_and_answers_the_same(client, tenant):
    _, email = add_user(tenant)
    site = Site(client, tenant)
    answers = [ask_reset(site, email) for _ in range(7)]
    assert mail_count(email) == 5
    assert normalised(answers[0].data) == normalised(answers[-1].data)


def test_forgot_password_is_limited_per_client_address(client, tenant):
    site = Site(client, tenant, addr="198.51.100.77")
    users = [add_user(tenant)[1] for _ in range(3)]
    for i in range(20):
        ask_reset(site, f"someone-{i}@example.com")
    for email in users:
        assert SENT in ask_reset(site, email).data
        assert mail_count(email) == 0
    assert SENT in ask_reset(Site(client, tenant, addr="198.51.100.78"), users[0]).data
    assert mail_count(users[0]) == 1


def test_reset_link_points_at_the_tenant_host_even_with_a_forged_host_header(client, tenant):
    _, email = add_user(tenant)
    site = Site(client, tenant)
    site.post(
        "/forgot-password",
        {"email": email},
        headers={"Host": f"{tenant.slug}.localhost:80@evil.example"},
    )
    from tests.site.support import last_mail

    body = last_mail(email).body
    assert "evil.example" not in body
    assert f"{tenant.slug}.localhost" in body


def test_reset_link_sets_a_new_password_without_signing_in(client, tenant):
    user_id, email = add_user(tenant)
    site = Site(client, tenant)
    ask_reset(site, email)
    link = link_in_mail(email, "reset-password")
    form = site.get(link)
    assert form.status_code == 200 and b"Choose a new password" in form.data
    assert form.headers["Referrer-Policy"] == "no-referrer"
    done = site.post(link, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert done.status_code == 303 and done.location == "/sign-in"
    page = site.get("/sign-in")
    assert "Password changed — sign in with your new password" in page.get_data(as_text=True)
    assert site.get("/").status_code == 302  # not signed in
    assert audit_entries(tenant, "auth:password:reset", user_id)
    assert site.sign_in(email, PASSWORD).status_code == 422
    assert site.sign_in(email, NEW_PASSWORD).status_code == 303


def test_reset_link_works_once(client, tenant):
    _, email = add_user(tenant)
    site = Site(client, tenant)
    ask_reset(site, email)
    link = link_in_mail(email, "reset-password")
    assert site.post(link, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}).status_code == 303
    again = site.get(link)
    assert again.status_code == 410 and b"invalid or expired" in again.data
    replay = site.post(
        link, {"password": "another new passphrase", "confirm": "another new passphrase"}
    )
    assert replay.status_code == 410
    assert site.sign_in(email, NEW_PASSWORD).status_code == 303


def test_expired_reset_link_is_refused(client, tenant):
    _, email = add_user(tenant)
    site = Site(client, tenant)
    ask_reset(site, email)
    link = link_in_mail(email, "reset-password")
    with db.tenant_scope(tenant) as session:
        session.execute(update(UserToken).values(expires_at=now() - timedelta(minutes=1)))
    assert site.get(link).status_code == 410
    response = site.post(link, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 410
    assert site.sign_in(email, NEW_PASSWORD).status_code == 422


def test_only_the_newest_reset_link_works(client, tenant):
    _, email = add_user(tenant)
    site = Site(client, tenant)
    ask_reset(site, email)
    first = link_in_mail(email, "reset-password")
    ask_reset(site, email)
    assert site.get(first).status_code == 410
    assert site.get(link_in_mail(email, "reset-password")).status_code == 200


def test_made_up_reset_link_shows_the_designed_page(client, tenant):
    response = Site(client, tenant).get("/reset-password/not-a-real-token")
    assert response.status_code == 410
    assert b"This reset link is invalid or expired" in response.data
    assert b'href="/forgot-password"' in response.data


def test_reset_refuses_weak_or_mismatched_passwords_next_to_the_field(client, tenant):
    _, email = add_user(tenant)
    site = Site(client, tenant)
    ask_reset(site, email)
    link = link_in_mail(email, "reset-password")
    short = site.post(link, {"password": "short", "confirm": "short"})
    assert short.status_code == 422 and b"Use at least 12 characters." in short.data
    assert b'aria-invalid="true"' in short.data
    mismatch = site.post(link, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD + "x"})
    assert mismatch.status_code == 422 and b"The two passwords are not the same." in mismatch.data
    assert site.get(link).status_code == 200  # still usable


def test_reset_ends_every_session(client, tenant):
    user_id, email = add_user(tenant)
    other = Site(client.application.test_client(), tenant)
    other.sign_in(email)
    site = Site(client, tenant)
    ask_reset(site, email)
    site.post(
        link_in_mail(email, "reset-password"), {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    )
    assert session_count(tenant, user_id) == 0
    assert other.get("/").status_code == 302


def test_reset_does_not_bypass_mfa(client, tenant):
    user_id, email = add_user(tenant)
    secret, _ = enable_mfa(tenant, user_id)
    site = Site(client, tenant)
    ask_reset(site, email)
    site.post(
        link_in_mail(email, "reset-password"), {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    )
    step = site.sign_in(email, NEW_PASSWORD)
    assert step.status_code == 303 and step.location == "/sign-in/verify"
    assert site.get("/").status_code == 302
    assert site.post("/sign-in/verify", {"code": code_at(secret)}).status_code == 303
