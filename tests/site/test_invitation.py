"""Invitations (link 72 h, single use, signs in and offers MFA) and self-registration (only when
the tenant allows it, never telling who already has an account) (A2)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from portal.accounts import invitations, lifecycle, settings
from portal.accounts.models import UserSession, UserToken
from portal.db import db
from tests.site.support import (
    NEW_PASSWORD,
    SYSTEM,
    Site,
    add_user,
    audit_entries,
    last_mail,
    link_in_mail,
    normalised,
    now,
)


def invitee(tenant) -> str:
    return f"invitee-{tenant.slug}@example.com"


def invite(tenant, email=None, name="Ada Invitee", roles=()):
    email = email or invitee(tenant)
    with db.tenant_scope(tenant) as session:
        user = invitations.invite_user(
            session,
            email=email,
            name=name,
            role_keys=list(roles),
            actor=SYSTEM,
            base_url=f"http://{tenant.slug}.localhost",
        )
        user_id = user.id
    return user_id, link_in_mail(email, "invitation")


def accept(site, link, password=NEW_PASSWORD, name="Ada Lovelace"):
    return site.post(link, {"name": name, "password": password, "confirm": password})


def allow_registration(tenant, allowed=True):
    with db.tenant_scope(tenant) as session:
        settings.update_security_settings(session, actor=SYSTEM, self_registration=allowed)


# ---- invitations --------------------------------------------------------------------------


def test_invitation_page_offers_to_join_with_the_name_prefilled(client, tenant):
    _, link = invite(tenant)
    page = Site(client, tenant).get(link)
    assert page.status_code == 200
    assert f"Join {tenant.name}".encode() in page.data
    assert b'value="Ada Invitee"' in page.data and invitee(tenant).encode() in page.data
    assert page.headers["Referrer-Policy"] == "no-referrer"


def test_accepting_signs_in_and_offers_mfa(client, tenant):
    user_id, link = invite(tenant)
    site = Site(client, tenant)
    response = accept(site, link)
    assert response.status_code == 303 and response.location == "/account/security?welcome=1"
    assert any("portal_device=" in c for c in response.headers.getlist("Set-Cookie"))
    page = site.get(response.location)
    assert page.status_code == 200
    assert f"Welcome to {tenant.name}".encode() in page.data
    assert b"Two-factor authentication is optional here" in page.data
    assert b"Set up two-factor authentication" in page.data
    with db.tenant_scope(tenant) as session:
        user = lifecycle.get_user(session, user_id)
        assert (user.status, user.name) == ("active", "Ada Lovelace")
        methods = session.scalars(select(UserSession.method).where(UserSession.user_id == user_id))
        assert list(methods) == ["invitation"]
    assert {"accounts:user:activate", "auth:user:sign_in"} <= {
        e.action for e in audit_entries(tenant, target_id=user_id)
    }
    site.post("/sign-out")
    assert site.sign_in(invitee(tenant), NEW_PASSWORD).status_code == 303


def test_accepting_when_the_policy_requires_mfa_says_so(client, tenant):
    with db.tenant_scope(tenant) as session:
        settings.update_security_settings(
            session, actor=SYSTEM, mfa_policy="everyone", mfa_grace_days=0
        )
    _, link = invite(tenant)
    site = Site(client, tenant)
    page = site.get(accept(site, link).location)
    assert b"requires two-factor authentication. Set it up to continue." in page.data
    assert site.get("/").location == "/account/security"


def test_invitation_link_works_once(client, tenant):
    _, link = invite(tenant)
    site = Site(client, tenant)
    assert accept(site, link).status_code == 303
    site.post("/sign-out")
    again = site.get(link)
    assert again.status_code == 410 and b"This invitation link is invalid or expired" in again.data
    assert accept(site, link, password="a different passphrase").status_code == 410
    assert site.sign_in(invitee(tenant), "a different passphrase").status_code == 422


def test_expired_invitation_is_refused(client, tenant):
    user_id, link = invite(tenant)
    with db.tenant_scope(tenant) as session:
        session.execute(
            update(UserToken)
            .where(UserToken.user_id == user_id)
            .values(expires_at=now() - timedelta(seconds=1))
        )
    site = Site(client, tenant)
    assert site.get(link).status_code == 410
    assert accept(site, link).status_code == 410
    with db.tenant_scope(tenant) as session:
        assert lifecycle.get_user(session, user_id).status == "invited"


def test_resent_invitation_voids_the_first_link(client, tenant):
    user_id, first = invite(tenant)
    with db.tenant_scope(tenant) as session:
        invitations.resend_invitation(
            session,
            lifecycle.get_user(session, user_id),
            actor=SYSTEM,
            base_url=f"http://{tenant.slug}.localhost",
        )
    site = Site(client, tenant)
    assert site.get(first).status_code == 410
    assert site.get(link_in_mail(invitee(tenant), "invitation")).status_code == 200


def test_invitation_of_another_tenant_is_not_found_here(client, make_tenant):
    mine, other = make_tenant(), make_tenant()
    _, link = invite(other)
    assert Site(client, mine).get(link).status_code == 410


def test_invitation_refuses_weak_and_mismatched_passwords(client, tenant):
    _, link = invite(tenant)
    site = Site(client, tenant)
    weak = accept(site, link, password="password1234")
    assert weak.status_code == 422 and b"most common passwords" in weak.data
    mismatch = site.post(link, {"password": NEW_PASSWORD, "confirm": "something else entirely"})
    assert mismatch.status_code == 422 and b"The two passwords are not the same." in mismatch.data
    assert site.get(link).status_code == 200


def test_invitation_keeps_the_invited_name_when_left_empty(client, tenant):
    user_id, link = invite(tenant)
    accept(Site(client, tenant), link, name="")
    with db.tenant_scope(tenant) as session:
        assert lifecycle.get_user(session, user_id).name == "Ada Invitee"


# ---- self-registration -------------------------------------------------------------------


def test_registration_is_not_found_when_the_tenant_does_not_allow_it(client, tenant):
    site = Site(client, tenant)
    email = f"new-{tenant.slug}@example.com"
    assert site.get("/register").status_code == 404
    assert site.post("/register", {"email": email}).status_code == 404
    assert last_mail(email) is None


def test_registration_sends_a_link_to_set_a_password(client, tenant):
    allow_registration(tenant)
    site = Site(client, tenant)
    assert b'href="/register"' in site.get("/sign-in").data
    page = site.post("/register", {"email": f"newbie-{tenant.slug}@example.com", "name": "New Bie"})
    assert page.status_code == 200 and b"Check your email" in page.data
    link = link_in_mail(f"newbie-{tenant.slug}@example.com", "invitation")
    assert accept(site, link).status_code == 303
    assert site.get("/account").status_code == 200


def test_registering_an_existing_email_shows_the_same_page(client, tenant):
    allow_registration(tenant)
    _, email = add_user(tenant)
    site = Site(client, tenant)
    ghost = "fresh-" + email
    existing = site.post("/register", {"email": email, "name": "Someone"})
    fresh = site.post("/register", {"email": ghost, "name": "Someone"})
    assert existing.status_code == fresh.status_code == 200
    assert normalised(existing.data, email) == normalised(fresh.data, ghost)
    assert "already have one" in last_mail(email).body
    with db.tenant_scope(tenant) as session:
        # The fresh sign-up exists, unconfirmed, and does not count toward max users yet.
        assert lifecycle.find_user(session, ghost).registration_pending
        assert lifecycle.count_users(session) == 1


def test_registration_refuses_an_invalid_email(client, tenant):
    allow_registration(tenant)
    response = Site(client, tenant).post("/register", {"email": "not-an-email", "name": ""})
    assert response.status_code == 422 and b"Enter a valid email address." in response.data


def test_registration_is_limited_per_email(client, tenant):
    allow_registration(tenant)
    _, email = add_user(tenant)
    site = Site(client, tenant)
    for _ in range(7):
        assert site.post("/register", {"email": email}).status_code == 200
    from tests.site.support import mail_count

    assert mail_count(email) == 5


def test_registration_over_the_user_limit_answers_like_any_other(client, make_tenant):
    tenant = make_tenant(max_users=1)
    allow_registration(tenant)
    _, email = add_user(tenant)
    site = Site(client, tenant)
    full = site.post("/register", {"email": f"over-{tenant.slug}@example.com"})
    known = site.post("/register", {"email": email})
    assert full.status_code == known.status_code == 200
    assert normalised(full.data) == normalised(known.data)
    with db.tenant_scope(tenant) as session:
        assert lifecycle.count_users(session) == 1


# ---- unconfirmed sign-ups and the user limit (issue 11 §6) --------------------------------


def test_unconfirmed_sign_ups_do_not_block_an_admins_invitation_at_the_limit(
    client, make_tenant, site_user, sign_in_site
):
    tenant = make_tenant(max_users=2)
    allow_registration(tenant)
    sign_in_site(tenant, site_user(tenant, ["tenant_admin"]))
    stranger = Site(client.application.test_client(), tenant, addr="203.0.113.77")
    for n in range(4):
        signed_up = stranger.post("/register", {"email": f"squat{n}-{tenant.slug}@example.com"})
        assert signed_up.status_code == 200
    response = client.post(
        "/users/invite",
        data={"email": f"hire-{tenant.slug}@example.com"},
        headers={"Host": f"{tenant.slug}.localhost"},
    )
    assert response.status_code == 303, response.get_data(as_text=True)[:300]
    with db.tenant_scope(tenant) as session:
        assert lifecycle.count_users(session) == 2


def test_confirming_a_sign_up_when_full_is_refused_on_the_page_then_works_with_room(
    client, make_tenant
):
    tenant = make_tenant(max_users=1)
    allow_registration(tenant)
    site = Site(client, tenant)
    email = f"early-{tenant.slug}@example.com"
    assert site.post("/register", {"email": email}).status_code == 200
    link = link_in_mail(email, "invitation")
    taken_id, _ = invite(tenant, email=f"chosen-{tenant.slug}@example.com")
    refused = accept(site, link)
    assert refused.status_code == 422
    assert f"{tenant.name} has reached its limit of 1 users" in refused.get_data(as_text=True)
    assert "use this link again" in refused.get_data(as_text=True)
    with db.tenant_scope(tenant) as session:
        lifecycle.delete_user(session, lifecycle.get_user(session, taken_id), actor=SYSTEM)
    assert accept(site, link).status_code == 303


def test_an_expired_sign_up_link_is_gone(client, tenant):
    allow_registration(tenant)
    site = Site(client, tenant)
    email = f"slow-{tenant.slug}@example.com"
    site.post("/register", {"email": email})
    link = link_in_mail(email, "invitation")
    with db.tenant_scope(tenant) as session:
        user = lifecycle.find_user(session, email)
        user.registration_expires_at = now() - timedelta(seconds=1)
    assert site.get(link).status_code == 410
    assert accept(site, link).status_code == 410
