"""My account: the profile page and changing the password (the current one required; other
sessions signed out on request) (A6, A8)."""

from __future__ import annotations

import json

from portal.accounts import lifecycle
from portal.db import db
from tests.conftest import PASSWORD
from tests.site.support import (
    NEW_PASSWORD,
    Site,
    add_user,
    audit_entries,
    last_mail,
    session_count,
)


def signed_in(client, tenant, **user):
    user_id, email = add_user(tenant, **user)
    site = Site(client, tenant)
    assert site.sign_in(email).status_code == 303
    return site, user_id, email


def change(site, current=PASSWORD, new=NEW_PASSWORD, confirm=None, others=True, **kwargs):
    data = {"current_password": current, "new_password": new, "confirm": confirm or new}
    if others:
        data["sign_out_others"] = "y"
    return site.post("/account/security", data, **kwargs)


# ---- profile ------------------------------------------------------------------------------


def test_profile_shows_email_roles_and_membership(client, tenant):
    site, _, email = signed_in(client, tenant, name="Grace Hopper", roles=["tenant_admin"])
    page = site.get("/account")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert email in html and 'value="Grace Hopper"' in html
    assert "Tenant admin" in html and "Member since" in html


def test_a_user_without_roles_is_a_member(client, tenant):
    site, _, _ = signed_in(client, tenant)
    assert b'<dd class="col-7">Member</dd>' in site.get("/account").data


def test_saving_the_name_is_audited(client, tenant):
    site, user_id, _ = signed_in(client, tenant, name="Old Name")
    response = site.post("/account", {"name": "  New   Name "})
    assert response.status_code == 303 and response.location == "/account"
    assert "Profile saved" in site.get("/account").get_data(as_text=True)
    with db.tenant_scope(tenant) as session:
        assert lifecycle.get_user(session, user_id).name == "New Name"
    assert audit_entries(tenant, target_id=user_id)[0].action == "accounts:user:update"


def test_the_email_cannot_be_changed_from_the_profile(client, tenant):
    site, user_id, email = signed_in(client, tenant)
    site.post("/account", {"name": "Someone", "email": "hijack@example.com"})
    with db.tenant_scope(tenant) as session:
        assert lifecycle.get_user(session, user_id).email == email


def test_too_long_a_name_is_refused_next_to_the_field(client, tenant):
    site, _, _ = signed_in(client, tenant)
    response = site.post("/account", {"name": "x" * 201})
    assert response.status_code == 422 and b"Use at most 200 characters." in response.data


def test_profile_over_htmx_answers_with_the_card_and_a_toast(client, tenant):
    site, _, _ = signed_in(client, tenant)
    response = site.post("/account", {"name": "Htmx User"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert json.loads(response.headers["HX-Trigger"]) == {"toast": "Profile saved"}
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith('<section id="profile"') and 'value="Htmx User"' in body
    bad = site.post("/account", {"name": "x" * 300}, headers={"HX-Request": "true"})
    assert bad.status_code == 422 and "<html" not in bad.get_data(as_text=True)


def test_account_pages_need_a_signed_in_user(client, tenant):
    site = Site(client, tenant)
    for path in ("/account", "/account/security", "/account/sessions"):
        response = site.get(path)
        assert response.status_code == 302
        assert response.location == f"/sign-in?next={path}", path
    assert site.post("/account", {"name": "x"}).status_code == 302


# ---- change password ----------------------------------------------------------------------


def test_changing_the_password_needs_the_current_one(client, tenant):
    site, user_id, email = signed_in(client, tenant)
    wrong = change(site, current="not my password")
    assert wrong.status_code == 422 and b"That is not your current password." in wrong.data
    assert not audit_entries(tenant, "auth:password:change", user_id)
    site.post("/sign-out")
    assert site.sign_in(email, NEW_PASSWORD).status_code == 422


def test_changing_the_password_signs_out_other_sessions_when_asked(client, tenant):
    site, user_id, email = signed_in(client, tenant)
    other = Site(client.application.test_client(), tenant)
    other.sign_in(email)
    assert session_count(tenant, user_id) == 2
    response = change(site)
    assert response.status_code == 303
    assert "signed out of 1 other session" in site.get("/account/security").get_data(as_text=True)
    assert other.get("/account").status_code == 302  # the other browser's cookie is refused
    assert site.get("/account").status_code == 200  # this one stays signed in
    assert audit_entries(tenant, target_id=user_id)[0].action == "auth:password:change"
    assert "password was changed" in last_mail(email).subject
    site.post("/sign-out")
    assert site.sign_in(email, PASSWORD).status_code == 422
    assert site.sign_in(email, NEW_PASSWORD).status_code == 303


def test_changing_the_password_can_keep_other_sessions(client, tenant):
    site, user_id, email = signed_in(client, tenant)
    other = Site(client.application.test_client(), tenant)
    other.sign_in(email)
    assert change(site, others=False).status_code == 303
    assert other.get("/account").status_code == 200
    assert session_count(tenant, user_id) == 2


def test_the_sign_out_others_box_is_ticked_by_default(client, tenant):
    site, _, _ = signed_in(client, tenant)
    html = site.get("/account/security").get_data(as_text=True)
    box = html[
        html.index('name="sign_out_others"') - 120 : html.index('name="sign_out_others"') + 60
    ]
    assert "checked" in box


def test_new_password_follows_the_policy(client, tenant):
    site, _, _ = signed_in(client, tenant)
    short = change(site, new="too short")
    assert short.status_code == 422 and b"Use at least 12 characters." in short.data
    same = change(site, new=PASSWORD)
    assert same.status_code == 422 and b"different from the current one" in same.data
    mismatch = change(site, confirm=NEW_PASSWORD + "!")
    assert mismatch.status_code == 422 and b"The two passwords are not the same." in mismatch.data


def test_wrong_current_passwords_lead_to_the_lock(client, tenant):
    site, _, email = signed_in(client, tenant)
    from portal.auth.throttle import SignInThrottle
    from portal.queue import queues

    throttle = SignInThrottle(queues.redis, f"user:{tenant.slug}")
    for _ in range(20):
        throttle.failed(email, None)
    refused = change(site)  # even the right current password, while locked
    assert refused.status_code == 422 and b"Too many wrong passwords" in refused.data


def test_change_password_over_htmx_answers_with_the_card(client, tenant):
    site, _, _ = signed_in(client, tenant)
    bad = change(site, current="nope nope nope", headers={"HX-Request": "true"})
    assert bad.status_code == 422
    assert bad.get_data(as_text=True).lstrip().startswith('<section id="password"')
    ok = change(site, headers={"HX-Request": "true"})
    assert ok.status_code == 200 and "Password changed" in ok.headers["HX-Trigger"]
    assert NEW_PASSWORD.encode() not in ok.data
