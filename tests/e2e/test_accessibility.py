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
