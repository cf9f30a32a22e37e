"""The accounts flow in Chromium, mail included: a tenant admin invites a user; the user accepts
from the email received by a real SMTP server, sets a password, enrols TOTP, signs out, signs
in with TOTP, uses a backup code once (the second use fails); the admin then revokes the
user's sessions and the user's next click lands on the sign-in page."""

from __future__ import annotations

import dataclasses
import re
import time

import pyotp
import pytest
from playwright.sync_api import Page, expect
from rq import SimpleWorker

from portal import mail
from portal.accounts.lifecycle import create_user
from portal.compliance.audit import Actor
from portal.db import db
from portal.queue import queues
from tests.conftest import PASSWORD, staff_code

pytestmark = pytest.mark.e2e

NEW_PASSWORD = "purple elephants juggle quietly"
LINK = re.compile(r"https?://\S+/invitation/\S+")


@pytest.fixture
def smtp_delivery(app, smtp_server):
    """Mail leaves through the loopback SMTP server (delivered by a real RQ worker)."""
    original = mail.settings()
    mail.configure(
        dataclasses.replace(app.config["PORTAL"], smtp_host="127.0.0.1", smtp_port=smtp_server.port)
    )
    try:
        yield smtp_server
    finally:
        mail.configure(original)


def deliver_mail() -> None:
    SimpleWorker([queues.get("default")], connection=queues.redis).work(burst=True)


def sign_in(page: Page, site: str, email: str, password: str) -> None:
    page.goto(f"{site}/sign-in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def enter_code(page: Page, code: str) -> None:
    page.get_by_label("Authentication code").fill(code)
    page.get_by_role("button", name="Verify and sign in").click()


def test_invited_user_enrols_totp_uses_backup_code_and_is_revoked_by_admin(
    browser, page: Page, live_server, make_tenant, smtp_delivery, artifacts
):
    port = live_server.rsplit(":", 1)[1]
    tenant = make_tenant(name="Acme Rockets")
    with db.tenant_scope(tenant) as session:
        create_user(
            session,
            email="boss@rockets.example",
            name="Bea Boss",
            password=PASSWORD,
            role_keys=["tenant_admin"],
            actor=Actor.system("test"),
        )
    site = f"http://{tenant.slug}.localhost:{port}"

    # The admin invites a new colleague.
    sign_in(page, site, "boss@rockets.example", PASSWORD)
    page.goto(f"{site}/users/invite")
    page.get_by_label("Email").fill("new@rockets.example")
    page.get_by_label("Name").fill("Nia New")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_text("Invitation sent to new@rockets.example")).to_be_visible()

    # The invitation arrives over SMTP.
    deliver_mail()
    # (Only this tenant's: the shared test Redis may hold other runs' mail jobs.)
    [message] = [m for m in smtp_delivery.messages if site in m.get_content()]
    assert message["To"] == "new@rockets.example"
    assert "invited" in message["Subject"]
    link = LINK.search(message.get_content()).group(0)

    invitee_context = browser.new_context(viewport={"width": 1280, "height": 900})
    user = invitee_context.new_page()
    try:
        # Accept: choose a password, land on the security page, enrol TOTP.
        user.goto(link)
        expect(user.get_by_role("heading", name="Join Acme Rockets")).to_be_visible()
        user.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        user.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
        user.get_by_role("button", name="Join Acme Rockets").click()
        expect(user).to_have_url(re.compile(r"/account/security"))
        user.get_by_role("button", name="Set up two-factor authentication").click()
        secret = user.locator("#mfa-secret").inner_text().replace(" ", "")
        totp = pyotp.TOTP(secret)
        enrolled_at = time.time()
        user.get_by_label("Code from your app").fill(totp.at(enrolled_at))
        user.get_by_role("button", name="Turn on two-factor authentication").click()
        codes = user.locator("#backup-codes li").all_inner_texts()
        assert len(codes) == 10
        user.screenshot(path=artifacts / "tenant-backup-codes.png", animations="disabled")

        # Sign out, then in again with a TOTP code (the next step: the enrolment's is spent).
        user.get_by_role("button", name="Sign out").click()
        sign_in(user, site, "new@rockets.example", NEW_PASSWORD)
        enter_code(user, totp.at(enrolled_at + 30))
        expect(user).to_have_url(f"{site}/")

        # A backup code works once.
        user.get_by_role("button", name="Sign out").click()
        sign_in(user, site, "new@rockets.example", NEW_PASSWORD)
        enter_code(user, codes[0])
        expect(user).to_have_url(f"{site}/")
        user.get_by_role("button", name="Sign out").click()
        sign_in(user, site, "new@rockets.example", NEW_PASSWORD)
        enter_code(user, codes[0])
        expect(user.get_by_role("alert")).to_contain_text("That code is not right.")
        enter_code(user, codes[1])
        expect(user).to_have_url(f"{site}/")

        # The admin revokes every session of the user ...
        page.goto(f"{site}/users")
        page.get_by_role("link", name="new@rockets.example").click()
        expect(page.get_by_role("heading", name="Nia New")).to_be_visible()
        page.screenshot(path=artifacts / "tenant-user.png", full_page=True, animations="disabled")
        page.get_by_text("Sign out everywhere…").click()
        page.get_by_role("button", name="Revoke all sessions").click()
        expect(page.get_by_text("No active sessions")).to_be_visible()

        # ... and the user's next click lands on the sign-in page.
        user.get_by_role("link", name="Sessions and devices", exact=True).click()
        expect(user).to_have_url(re.compile(r"/sign-in"))
    finally:
        invitee_context.close()


def test_users_page_screenshot(page: Page, live_server, make_tenant, artifacts):
    """The users list of a tenant with a few dozen people, for the README."""
    from portal.demo import seed_tenant_people

    port = live_server.rsplit(":", 1)[1]
    tenant = make_tenant(name="Acme Rockets", max_users=500)
    with db.tenant_scope(tenant) as session:
        seed_tenant_people(session, tenant)
    site = f"http://{tenant.slug}.localhost:{port}"
    sign_in(page, site, f"admin@{tenant.slug}.example", "demo-password-2026")
    page.goto(f"{site}/users")
    expect(page.get_by_role("heading", name="Users")).to_be_visible()
    page.screenshot(path=artifacts / "tenant-users.png", animations="disabled")


def test_support_staff_open_a_tenant_from_the_console_read_only(
    page: Page, live_server, make_staff, make_tenant
):
    """The hand-off crosses hosts in a real browser (the console's CSP allows forms to submit
    only to itself) and lands on the tenant's users with the staff banner."""
    port = live_server.rsplit(":", 1)[1]
    member = make_staff("support")
    tenant = make_tenant(name="Acme Rockets")
    with db.tenant_scope(tenant) as session:
        create_user(session, email="pat@rockets.example", name="Pat", actor=Actor.system("test"))
    page.goto(f"{live_server}/sign-in")
    page.get_by_label("Email").fill(member.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Authentication code").fill(staff_code(member))  # staff MFA
    page.get_by_role("button", name="Verify and sign in").click()
    expect(page).to_have_url(f"{live_server}/")  # signed in before going on
    page.goto(f"{live_server}/tenants/{tenant.slug}")
    page.get_by_role("button", name="Open Acme Rockets's users (read-only)").click()
    expect(page).to_have_url(f"http://{tenant.slug}.localhost:{port}/users")
    expect(page.get_by_text("Viewing Acme Rockets as MSP staff")).to_be_visible()
    expect(page.get_by_role("table")).to_contain_text("pat@rockets.example")
    expect(page.get_by_role("link", name="Invite users")).to_have_count(0)
