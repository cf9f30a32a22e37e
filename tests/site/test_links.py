"""One-time links die with what they authorised (issue 11 §4): an invitation after the address
is corrected, a reset link after the password changes or the email changes, every link after
suspension or deletion. And links in mail carry the configured host and port, never a port the
client put in its Host header."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.accounts import invitations, lifecycle, links, settings
from portal.accounts.models import UserToken
from portal.db import db
from portal.tenancy.urls import tenant_base_url
from tests.site.support import (
    NEW_PASSWORD,
    SYSTEM,
    Site,
    add_user,
    last_mail,
    link_in_mail,
)

GONE = 410


@pytest.fixture
def site(client, tenant):
    return Site(client, tenant)


@pytest.fixture
def admin_site(app, tenant):
    """A second browser, signed in as a tenant admin of `tenant`."""
    _, email = add_user(tenant, f"boss-{tenant.slug}@example.com", roles=["tenant_admin"])
    browser = Site(app.test_client(), tenant, addr="198.51.100.99")
    assert browser.sign_in(email).status_code == 303
    return browser


def invitation_link(tenant, email) -> str:
    with db.tenant_scope(tenant) as session:
        invitations.invite_user(session, email=email, actor=SYSTEM, base_url="http://x.localhost")
    return link_in_mail(email, "invitation")


def reset_link(site, email) -> str:
    assert site.post("/forgot-password", {"email": email}).status_code == 200
    return link_in_mail(email, "reset-password")


def user_id(tenant, email) -> int:
    with db.tenant_scope(tenant) as session:
        return lifecycle.find_user(session, email).id


def pending_tokens(tenant, uid) -> list[UserToken]:
    with db.tenant_scope(tenant) as session:
        return list(
            session.scalars(
                select(UserToken).where(UserToken.user_id == uid, UserToken.used_at.is_(None))
            )
        )


def test_an_invitation_dies_when_the_admin_corrects_the_address(site, tenant, admin_site):
    typo = f"ada@{tenant.slug}.exmaple.com"
    right = f"ada@{tenant.slug}.example.com"
    stale = invitation_link(tenant, typo)
    uid = user_id(tenant, typo)
    response = admin_site.post(f"/users/{uid}/profile", {"name": "Ada", "email": right})
    assert response.status_code == 303
    assert site.get(stale).status_code == GONE
    assert site.post(stale, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}).status_code == GONE
    # The corrected address got a working invitation, and the old one a notice.
    fresh = link_in_mail(right, "invitation")
    assert fresh != stale and site.get(fresh).status_code == 200
    assert right in last_mail(typo).body and "changed" in last_mail(typo).subject


def test_a_reset_link_dies_when_the_password_is_changed(site, tenant):
    _, email = add_user(tenant)
    stale = reset_link(site, email)
    assert site.sign_in(email).status_code == 303
    changed = site.post(
        "/account/security",
        {
            "current_password": "correct horse battery staple",
            "new_password": NEW_PASSWORD,
            "confirm": NEW_PASSWORD,
        },
    )
    assert changed.status_code == 303, changed.get_data(as_text=True)[:300]
    site.clear_cookies()
    assert site.get(stale).status_code == GONE
    response = site.post(stale, {"password": "another passphrase entirely", "confirm": "x"})
    assert response.status_code == GONE
    assert site.sign_in(email, NEW_PASSWORD).status_code == 303


def test_a_reset_link_dies_when_the_password_is_reset_through_another(site, tenant):
    _, email = add_user(tenant)
    first = reset_link(site, email)
    with db.tenant_scope(tenant) as session:  # a second link, issued as if by another request
        user = lifecycle.find_user(session, email)
        second = links.issue_token(session, user, "password_reset", 1)
        session.add(
            UserToken(
                user_id=user.id,
                purpose="password_reset",
                token_hash="0" * 64,
                expires_at=user.created_at.replace(year=2999),
            )
        )
    assert site.get(first).status_code == GONE  # a new link voids the earlier one
    done = site.post(
        f"/reset-password/{second}", {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    )
    assert done.status_code == 303
    assert pending_tokens(tenant, user_id(tenant, email)) == []


def test_a_reset_link_dies_when_an_admin_changes_the_email(site, tenant, admin_site):
    uid, email = add_user(tenant)
    stale = reset_link(site, email)
    response = admin_site.post(f"/users/{uid}/profile", {"name": "", "email": "new-" + email})
    assert response.status_code == 303
    assert site.get(stale).status_code == GONE
    assert pending_tokens(tenant, uid) == []


@pytest.mark.parametrize("action", ["suspend", "delete"])
def test_suspension_and_deletion_kill_every_link_for_good(site, tenant, admin_site, action):
    invited = f"invited-{tenant.slug}@example.com"
    invitation = invitation_link(tenant, invited)
    active_id, active = add_user(tenant)
    reset = reset_link(site, active)
    for uid in (user_id(tenant, invited), active_id):
        response = admin_site.post(f"/users/{uid}/{action}", {"reason": "left"})
        assert response.status_code == 303
        assert pending_tokens(tenant, uid) == []
    assert site.get(invitation).status_code == GONE
    assert site.get(reset).status_code == GONE
    # Undoing the suspension or deletion does not bring the links back.
    undo = "reactivate" if action == "suspend" else "restore"
    for uid in (user_id(tenant, invited), active_id):
        assert admin_site.post(f"/users/{uid}/{undo}").status_code == 303
    assert site.get(invitation).status_code == GONE
    assert site.get(reset).status_code == GONE


# ---- the Host header's port is not ours to put in a link --------------------------------------


def mailed_link(address: str) -> str:
    message = last_mail(address)
    assert message is not None, f"no mail to {address}"
    return re.search(r"https?://\S+", message.body).group(0)


def test_a_reset_link_ignores_the_port_in_the_host_header(app, site, tenant):
    _, email = add_user(tenant)
    response = site.post(
        "/forgot-password", {"email": email}, headers={"Host": f"{tenant.slug}.localhost:6666"}
    )
    assert response.status_code == 200
    link = mailed_link(email)
    assert ":6666" not in link
    assert link.startswith(tenant_base_url(tenant, app.config["PORTAL"]) + "/reset-password/")


def test_invitation_and_registration_links_ignore_the_port_in_the_host_header(
    app, tenant, admin_site
):
    evil = {"Host": f"{tenant.slug}.localhost:6666"}
    base = tenant_base_url(tenant, app.config["PORTAL"])
    invited = f"port-{tenant.slug}@example.com"
    response = admin_site.post("/users/invite", {"email": invited}, headers=evil)
    assert response.status_code == 303
    assert mailed_link(invited).startswith(base + "/invitation/")
    uid = user_id(tenant, invited)
    assert admin_site.post(f"/users/{uid}/resend-invitation", headers=evil).status_code == 303
    assert mailed_link(invited).startswith(base + "/invitation/")

    with db.tenant_scope(tenant) as session:
        settings.update_security_settings(session, actor=SYSTEM, self_registration=True)
    stranger = Site(app.test_client(), tenant, addr="203.0.113.50")
    signed_up = f"signup-{tenant.slug}@example.com"
    assert stranger.post("/register", {"email": signed_up}, headers=evil).status_code == 200
    assert mailed_link(signed_up).startswith(base + "/invitation/")
    assert ":6666" not in last_mail(signed_up).body
