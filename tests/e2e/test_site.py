"""A tenant's own site in Chromium: an admin signs in, sees only their organisation, signs out,
and the old session cookie is refused by the server afterwards."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from portal.accounts.lifecycle import create_user
from portal.compliance.audit import Actor
from portal.db import db
from tests.conftest import PASSWORD

pytestmark = pytest.mark.e2e


def add_user(tenant, email, name, password=PASSWORD, roles=()):
    with db.tenant_scope(tenant) as session:
        create_user(
            session,
            email=email,
            name=name,
            password=password,
            role_keys=roles,
            actor=Actor.system("test"),
        )


def test_tenant_admin_signs_in_sees_own_people_and_signs_out_for_good(
    browser, page: Page, live_server, make_tenant, artifacts
):
    port = live_server.rsplit(":", 1)[1]
    mine = make_tenant(name="Acme Rockets")
    other = make_tenant(name="Other Org")
    add_user(mine, "wile@rockets.example", "Wile E. Coyote", roles=["tenant_admin"])
    add_user(mine, "road@rockets.example", "Road Runner", password=None)
    add_user(other, "hidden@other.example", "Hidden Person")
    site = f"http://{mine.slug}.localhost:{port}"

    page.goto(f"{site}/")
    expect(page).to_have_url(f"{site}/sign-in?next=/")
    expect(page.get_by_role("heading", name="Sign in to Acme Rockets")).to_be_visible()
    page.get_by_label("Email").fill("wile@rockets.example")
    page.get_by_label("Password").fill("wrong password here")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Email or password is not right.")

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#main").get_by_role("heading", name="Acme Rockets")).to_be_visible()
    page.get_by_role("link", name="Users", exact=True).click()
    table = page.get_by_role("table")
    expect(table).to_contain_text("road@rockets.example")
    expect(table).not_to_contain_text("hidden@other.example")

    cookies = page.context.cookies()
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{site}/sign-in")

    replay = browser.new_context()
    try:
        replay.add_cookies(cookies)
        stolen = replay.new_page()
        stolen.goto(f"{site}/")
        expect(stolen).to_have_url(f"{site}/sign-in?next=/")
    finally:
        replay.close()
