"""WCAG 2.2 AA checks with axe-core on the console and tenant pages (UI.md quality bar).

axe is injected into a context with `bypass_csp=True`, so the app's CSP stays as strict as in
production; serious and critical violations fail the test with their rule and targets.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import PASSWORD

pytestmark = pytest.mark.e2e

AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def violations(page: Page) -> list[str]:
    page.add_script_tag(content=AXE)
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", TAGS
    )
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.fixture
def axe_page(browser, live_server):
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(5_000)
    page = context.new_page()
    yield page
    context.close()


def test_console_pages_have_no_serious_accessibility_violations(
    axe_page, live_server, make_staff, make_tenant
):
    page = axe_page
    member = make_staff()
    tenant = make_tenant(name="Accessible Org", domains=["a11y.example.org"])
    page.goto(f"{live_server}/sign-in")
    assert violations(page) == []
    page.get_by_label("Email").fill(member.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    found = {}
    for path in (
        "/",
        "/tenants",
        "/tenants/new",
        f"/tenants/{tenant.slug}",
        "/staff",
        "/audit",
        "/jobs",
        "/outbox",
    ):
        page.goto(f"{live_server}{path}")
        found[path] = violations(page)
    assert found == {path: [] for path in found}


def test_tenant_pages_have_no_serious_accessibility_violations(axe_page, live_server, make_tenant):
    port = live_server.rsplit(":", 1)[1]
    tenant = make_tenant(name="Accessible Tenant")
    page = axe_page
    page.goto(f"http://{tenant.slug}.localhost:{port}/sign-in")
    assert violations(page) == []
    page.goto(f"http://nobody-here.localhost:{port}/")
    assert violations(page) == []


def test_tenant_admin_and_account_pages_have_no_serious_accessibility_violations(
    axe_page, live_server, make_tenant
):
    from portal.db import db
    from portal.demo import DEMO_PASSWORD, seed_tenant_people

    port = live_server.rsplit(":", 1)[1]
    tenant = make_tenant(name="Accessible People", max_users=500)
    with db.tenant_scope(tenant) as session:
        seed_tenant_people(session, tenant)
    site = f"http://{tenant.slug}.localhost:{port}"
    page = axe_page
    for path in ("/forgot-password", "/register"):
        page.goto(f"{site}{path}")
        assert violations(page) == [], path
    page.goto(f"{site}/sign-in")
    page.get_by_label("Email").fill(f"admin@{tenant.slug}.example")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#main").get_by_role("heading", level=1)).to_be_visible()
    user_paths = []  # one user page of each status: each shows different actions
    for status in ("active", "invited", "suspended", "deleted"):
        page.goto(f"{site}/users?status={status}")
        user_paths.append(page.locator("table a[href^='/users/']").first.get_attribute("href"))
    found = {}
    for path in (
        "/",
        "/users",
        "/users?status=suspended",
        "/users/invite",
        *user_paths,
        "/roles",
        "/roles/new",
        "/roles/tenant_admin",
        "/settings/security",
        "/sessions",
        "/audit",
        "/account",
        "/account/security",
        "/account/sessions",
    ):
        page.goto(f"{site}{path}")
        found[path] = violations(page)
    page.goto(f"{site}/account/security")
    page.get_by_role("button", name="Set up two-factor authentication").click()
    found["mfa setup"] = violations(page)
    for path in user_paths:  # the dangerous actions' confirmation panels, opened
        page.goto(f"{site}{path}")
        for summary in page.locator("details > summary").all():
            summary.click()
        page.mouse.move(0, 0)
        found[f"{path} opened"] = violations(page)
    assert found == {path: [] for path in found}
