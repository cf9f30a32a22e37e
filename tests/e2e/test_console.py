"""The staff console in Chromium: sign in, create, find, suspend and audit a tenant.

These tests drive a real browser against the live server, so what they create is committed;
every tenant they create is registered for purging first and dropped afterwards.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import PASSWORD, purge, staff_code, unique_slug

pytestmark = pytest.mark.e2e

SAME_DOCUMENT = "window.__e2eDocument"


@pytest.fixture
def purge_after(app):
    """Slugs appended here are purged (schema, role, row) when the test ends."""
    slugs: list[str] = []
    yield slugs
    for slug in slugs:
        purge(slug)


def sign_in(page: Page, base: str, member) -> None:
    """Both steps: the password, then the code from the member's authenticator app."""
    page.goto(f"{base}/sign-in")
    page.get_by_label("Email").fill(member.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base}/sign-in/verify")
    page.get_by_label("Authentication code").fill(staff_code(member))
    page.get_by_role("button", name="Verify and sign in").click()
    expect(page).to_have_url(f"{base}/")
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()


def mark_document(page: Page) -> None:
    """Tag the current document; a full page load would lose the tag."""
    page.evaluate(f"{SAME_DOCUMENT} = true")


def assert_same_document(page: Page) -> None:
    assert page.evaluate(f"{SAME_DOCUMENT} === true"), "the page navigated instead of swapping"


def snap(page: Page, artifacts: Path, name: str) -> None:
    """A full-page screenshot with transitions finished (for the README and for review)."""
    page.screenshot(path=artifacts / name, full_page=True, animations="disabled")


def query_url(base: str, q: str) -> re.Pattern[str]:
    """The tenants list URL with `q` pushed (other, empty filters may ride along)."""
    return re.compile(rf"^{re.escape(base)}/tenants\?(.*&)?q={re.escape(q)}(&.*)?$")


def results(page: Page):
    return page.locator("#results")


def test_staff_creates_finds_suspends_and_audits_a_tenant(
    page: Page, live_server, make_staff, purge_after, artifacts
):
    base = live_server
    member = make_staff("platform_admin")
    slug = unique_slug("e2e")
    name = f"Acme {slug[-4:]}"
    reason = "Invoice 42 unpaid for 90 days"
    purge_after.append(slug)

    page.goto(f"{base}/sign-in")
    expect(page.get_by_role("heading", name="Staff sign-in")).to_be_visible()
    snap(page, artifacts, "console-sign-in.png")
    sign_in(page, base, member)

    # Create the tenant.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Tenants").click()
    expect(page).to_have_url(f"{base}/tenants")
    page.get_by_role("link", name="Create tenant").click()
    expect(page.get_by_role("heading", name="Create tenant", level=1)).to_be_visible()
    page.get_by_label("Organisation name").fill(name)
    page.get_by_label("Slug").fill(slug)
    page.get_by_role("button", name="Create tenant").click()
    expect(page).to_have_url(f"{base}/tenants/{slug}")
    expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()
    expect(page.locator("#toasts")).to_contain_text(f"Tenant {name} created")

    # Find it by live search: the results swap in place and the URL records the query.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Tenants").click()
    expect(page).to_have_url(f"{base}/tenants")
    mark_document(page)
    documents: list[str] = []
    page.on("request", lambda r: documents.append(r.url) if r.resource_type == "document" else None)
    search = page.get_by_label("Search", exact=True)
    with page.expect_response(lambda r: r.url.startswith(f"{base}/tenants?q=")) as answer:
        search.press_sequentially(slug)
    response = answer.value
    assert response.status == 200
    assert response.request.headers.get("hx-request") == "true"
    assert "<html" not in response.text(), "live search should answer with a fragment"
    expect(page).to_have_url(query_url(base, slug))
    expect(results(page)).to_contain_text(f"1 tenant matching “{slug}”")
    rows = results(page).get_by_role("row").filter(has_text=slug)
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("Active")
    assert_same_document(page)
    assert documents == [], f"live search loaded whole documents: {documents}"
    snap(page, artifacts, "console-tenants.png")

    # Open it and suspend it with a reason.
    results(page).get_by_role("link", name=name).click()
    expect(page).to_have_url(f"{base}/tenants/{slug}")
    expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()
    lifecycle = page.locator("#lifecycle")
    lifecycle.locator("summary", has_text="Suspend tenant…").click()
    lifecycle.get_by_label("Reason").fill(reason)
    lifecycle.get_by_role("button", name=f"Suspend {name}").click()
    expect(page.locator(".page-header .status-badge")).to_have_text("Suspended")
    lifecycle = page.locator("#lifecycle")
    expect(lifecycle).to_contain_text("Suspended: sign-in and API are refused")
    expect(lifecycle).to_contain_text(f"Reason: {reason}")
    expect(lifecycle.get_by_role("button", name=f"Resume {name}")).to_be_visible()
    expect(page.locator("#toasts")).to_contain_text(f"Tenant {name} suspended")
    snap(page, artifacts, "console-tenant.png")

    # The audit trail has both changes, by this staff member.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit").click()
    expect(page.get_by_role("heading", name="Platform audit trail")).to_be_visible()
    mine = page.get_by_role("row").filter(has_text=member.email).filter(has_text=slug)
    expect(mine.filter(has_text="tenancy:tenant:create")).to_have_count(1)
    suspended = mine.filter(has_text="tenancy:tenant:suspend")
    expect(suspended).to_have_count(1)
    expect(suspended).to_contain_text(reason)
    snap(page, artifacts, "console-audit.png")

    # The tenant's own site now refuses sign-in with the designed page.
    port = base.rsplit(":", 1)[1]
    response = page.goto(f"http://{slug}.localhost:{port}/sign-in")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"{name} is suspended")
    expect(page.get_by_text("is suspended")).not_to_have_count(0)
    snap(page, artifacts, "tenant-suspended.png")


def test_create_tenant_errors_come_back_inline(page: Page, live_server, make_staff, artifacts):
    base = live_server
    member = make_staff("platform_admin")
    sign_in(page, base, member)
    page.goto(f"{base}/tenants/new")
    mark_document(page)

    # Nothing filled in: both required fields complain, next to themselves.
    with page.expect_response(f"{base}/tenants/new") as answer:
        page.get_by_role("button", name="Create tenant").click()
    assert answer.value.status == 422
    assert answer.value.request.headers.get("hx-request") == "true"
    name = page.get_by_label("Organisation name")
    slug = page.get_by_label("Slug")
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_have_accessible_description(re.compile("Give the organisation a name."))
    expect(slug).to_have_attribute("aria-invalid", "true")
    expect(slug).to_have_accessible_description(re.compile("Choose a slug."))
    expect(page.locator("#name-error")).to_have_text("Give the organisation a name.")
    expect(page.locator("#slug-error")).to_have_text("Choose a slug.")
    expect(name).to_be_focused()
    expect(page).to_have_url(f"{base}/tenants/new")
    assert_same_document(page)

    # A slug the service refuses: its message lands under the slug, the name is kept.
    bad = "Bad Slug!"  # never valid, so nothing to purge
    name.fill("Inline Errors Ltd")
    slug.fill(bad)
    with page.expect_response(f"{base}/tenants/new") as answer:
        page.get_by_role("button", name="Create tenant").click()
    assert answer.value.status == 422
    expect(page.locator("#slug-error")).to_contain_text("Use lower-case letters, digits")
    expect(slug).to_have_attribute("aria-invalid", "true")
    expect(slug).to_have_value(bad)
    expect(name).to_have_value("Inline Errors Ltd")
    expect(name).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator("#name-error")).to_have_count(0)
    expect(page).to_have_url(f"{base}/tenants/new")
    assert_same_document(page)
    snap(page, artifacts, "console-tenant-new-errors.png")


def test_back_button_after_live_search_restores_previous_list(
    page: Page, live_server, make_staff, make_tenant
):
    base = live_server
    prefix = unique_slug("bk")
    first = make_tenant(slug=f"{prefix}-alpha", name=f"Alpha {prefix}")
    second = make_tenant(slug=f"{prefix}-beta", name=f"Beta {prefix}")
    member = make_staff("platform_admin")
    sign_in(page, base, member)

    page.goto(f"{base}/tenants?q={prefix}")
    expect(results(page)).to_contain_text(f"2 tenants matching “{prefix}”")
    search = page.get_by_label("Search", exact=True)
    expect(search).to_have_value(prefix)

    search.press("End")
    search.press_sequentially("-alpha")
    expect(page).to_have_url(query_url(base, f"{prefix}-alpha"))
    expect(results(page)).to_contain_text(f"1 tenant matching “{prefix}-alpha”")
    expect(results(page).get_by_role("link", name=second.name)).to_have_count(0)

    page.go_back()
    expect(page).to_have_url(f"{base}/tenants?q={prefix}")
    expect(results(page)).to_contain_text(f"2 tenants matching “{prefix}”")
    expect(results(page).get_by_role("link", name=first.name)).to_be_visible()
    expect(results(page).get_by_role("link", name=second.name)).to_be_visible()
    expect(page.get_by_label("Search", exact=True)).to_have_value(prefix)

    page.go_forward()
    expect(page).to_have_url(query_url(base, f"{prefix}-alpha"))
    expect(results(page)).to_contain_text(f"1 tenant matching “{prefix}-alpha”")


def test_live_server_refuses_a_form_post_without_csrf_token(
    page: Page, live_server, make_staff, purge_after
):
    base = live_server
    member = make_staff("platform_admin")
    sign_in(page, base, member)
    slug = unique_slug("csrf")
    purge_after.append(slug)

    response = page.request.post(
        f"{base}/tenants/new", form={"name": "No Token Ltd", "slug": slug}, max_redirects=0
    )

    assert response.status == 400
    assert "Form expired" in response.text()
    page.goto(f"{base}/tenants?q={slug}")
    expect(results(page)).to_contain_text(f"0 tenants matching “{slug}”")


def test_staff_member_without_mfa_enrols_at_first_sign_in(
    page: Page, live_server, make_staff, artifacts
):
    import pyotp

    base = live_server
    member = make_staff("support", mfa=False)
    page.goto(f"{base}/sign-in")
    page.get_by_label("Email").fill(member.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base}/account")
    expect(page.get_by_role("alert")).to_contain_text("must use two-factor authentication")
    main = page.get_by_role("navigation", name="Main")
    expect(main.get_by_role("link", name="Tenants")).to_have_count(0)
    expect(main.get_by_role("link", name="My account")).to_be_visible()

    page.goto(f"{base}/tenants")  # anything else leads back to enrolment
    expect(page).to_have_url(f"{base}/account")
    page.get_by_role("button", name="Set up two-factor authentication").click()
    expect(
        page.get_by_role("img", name="QR code to scan with your authenticator app")
    ).to_be_visible()
    key = page.locator("#mfa-secret").inner_text().replace(" ", "")
    snap(page, artifacts, "console-mfa-enrol.png")
    page.get_by_label("Code from your app").fill(pyotp.TOTP(key).now())
    page.get_by_role("button", name="Turn on two-factor authentication").click()
    expect(page.get_by_role("heading", name="Two-factor authentication is on")).to_be_visible()
    expect(page.locator("#backup-codes li")).to_have_count(10)
    page.get_by_role("link", name="I saved them — continue").click()
    expect(page).to_have_url(f"{base}/account")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Tenants").click()
    expect(page).to_have_url(f"{base}/tenants")


def test_staff_mfa_and_account_pages_have_no_serious_accessibility_violations(
    browser, live_server, make_staff
):
    import pyotp

    from tests.e2e.checkers import axe_violations as violations

    base = live_server
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(5_000)
    page = context.new_page()
    try:
        member = make_staff("support", mfa=False)
        found = {}
        page.goto(f"{base}/sign-in")
        page.get_by_label("Email").fill(member.email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(f"{base}/account")
        found["enrolment required"] = violations(page)
        page.get_by_role("button", name="Set up two-factor authentication").click()
        expect(page.locator("#mfa-secret")).to_be_visible()
        found["enrolment"] = violations(page)
        key = page.locator("#mfa-secret").inner_text().replace(" ", "")
        page.get_by_label("Code from your app").fill(pyotp.TOTP(key).now())
        page.get_by_role("button", name="Turn on two-factor authentication").click()
        expect(page.locator("#backup-codes li")).to_have_count(10)
        found["backup codes"] = violations(page)
        page.goto(f"{base}/account")
        found["account"] = violations(page)
        page.get_by_role("button", name="Sign out", exact=True).click()
        page.get_by_label("Email").fill(member.email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(f"{base}/sign-in/verify")
        found["second step"] = violations(page)
        assert found == {name: [] for name in found}
    finally:
        context.close()
