"""Every page of both sites, with realistic data, through axe (WCAG 2.2 AA: no serious or
critical violation) and the Nu HTML Checker (no error; htmx's `hx-*` attributes allowed).

The pages come from the apps' `url_map`: a GET route without arguments is visited as it is, one
with arguments through `argument_pages`, and anything else must be in `EXCLUDED` with a reason,
so a new page is checked from the day it exists. Pages are also visited in their states: user
pages of every status with their confirmation panels open, forms answered with errors (422),
the second sign-in step, MFA setup, a staff visit with its banner, the designed error pages.

One browser crawl serves both checks: axe runs on the page as shown, and the HTML the server
sent (or, after an in-page change, the page's DOM) is written to a folder that vnu validates in
one run. Signing in goes through the shared fixtures (`sign_in_as`, `sign_in_site`) on the test
client, whose session cookie is then handed to the browser.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import BrowserContext, Page

from portal.demo import DEMO_PASSWORD
from tests.conftest import PASSWORD
from tests.e2e import realistic
from tests.e2e.checkers import axe_violations, validate
from tests.site import conftest as site_fixtures

pytestmark = pytest.mark.e2e
sign_in_site = site_fixtures.sign_in_site  # the tenant site's sign-in fixture, used here too

# GET routes that are not pages, with the reason; everything else is visited.
EXCLUDED = {
    ("console", "static"): "files (CSS, scripts, images), not pages",
    ("site", "static"): "files (CSS, scripts, images), not pages",
    ("console", "ops.healthz"): "plain text for probes",
    ("console", "ops.readyz"): "plain text for probes",
    ("console", "ops.metrics"): "Prometheus text format",
    ("console", "console.audit_export"): "a CSV download",
    ("site", "site.audit_export"): "a CSV download",
}
# Pages of a signed-out visitor (signed in, they redirect).
SIGNED_OUT = {
    ("console", "console.sign_in"),
    ("console", "console.sign_in_verify"),
    ("site", "site.sign_in"),
    ("site", "site.forgot_password"),
    ("site", "site.register"),
    ("site", "site.invitation"),
    ("site", "site.reset_password"),
    ("site", "site.mfa_verify"),
}


def argument_pages(data: realistic.Realistic) -> dict[tuple[str, str], list[tuple[str, int]]]:
    """(site, endpoint) -> [(path, expected status)] for the routes with arguments."""
    return {
        ("console", "console.tenant"): [
            (f"/tenants/{t.slug}", 200) for t in (data.main, data.small, data.gone) if t
        ],
        ("console", "console.staff_tenants"): [
            (f"/staff/{data.support_id}/tenants", 200),
            (f"/staff/{data.admin_staff_id}/tenants", 200),  # a platform admin: nothing to pick
        ],
        ("console", "console.outbox_message"): [(f"/outbox/{data.outbox_id}", 200)],
        ("site", "site.user"): [(f"/users/{i}", 200) for i in data.user_pages.values()],
        ("site", "site.role"): [
            ("/roles/tenant_admin", 200),
            ("/roles/compliance_officer", 200),
            (f"/roles/{data.custom_role}", 200),
        ],
        ("site", "site.consent_purpose"): [
            (f"/consent/purposes/{key}", 200) for key in data.consent_purposes
        ],
        ("site", "site.user_consents"): [(f"/users/{data.consent_user}/consents", 200)],
        ("site", "site.invitation"): [(f"/invitation/{data.invitation_token}", 200)],
        ("site", "site.reset_password"): [(f"/reset-password/{data.reset_token}", 200)],
        # A one-time hand-off that redirects; a used or unknown link is a designed 410 page.
        # The hand-off itself is walked below (a staff visit, banner shown).
        ("site", "site.staff_access_start"): [("/staff-access/not-a-live-link", 410)],
    }


def get_routes(app) -> dict[str, dict[str, bool]]:
    """site -> {endpoint: has arguments} for every GET route of both apps."""
    sites = {"console": app, "site": app.extensions["portal.tenant_site"]}
    return {
        name: {
            rule.endpoint: bool(rule.arguments)
            for rule in flask_app.url_map.iter_rules()
            if "GET" in rule.methods
        }
        for name, flask_app in sites.items()
    }


def test_every_get_route_is_visited_or_excluded_with_a_reason(app):
    planned = argument_pages(realistic.Realistic())
    missing = [
        f"{site} {endpoint}"
        for site, endpoints in get_routes(app).items()
        for endpoint, has_arguments in endpoints.items()
        if (site, endpoint) not in EXCLUDED and has_arguments and (site, endpoint) not in planned
    ]
    assert missing == [], (
        "pages with arguments that test_every_page does not visit: add them to argument_pages "
        "(or to EXCLUDED with the reason)"
    )


# A long page's sidebar: its background runs down the whole page (a full-page screenshot, print)
# and its menu stays in view when the page is scrolled to the end.
SIDEBAR_GAP = """() => {
  const nav = document.querySelector("aside.navbar-vertical");
  if (!nav || getComputedStyle(nav).display === "none") return null;
  const page = document.documentElement.scrollHeight;
  const bottom = nav.getBoundingClientRect().bottom + window.scrollY;
  if (bottom < page - 1) return `the sidebar ends at ${Math.round(bottom)} px of a ${page} px page`;
  window.scrollTo(0, page);
  const menu = nav.querySelector(".navbar-nav").getBoundingClientRect();
  window.scrollTo(0, 0);
  return menu.top < 0 || menu.bottom > window.innerHeight ? "its menu scrolls out of view" : null;
}"""


@dataclass
class Crawl:
    """What the crawl found: axe violations and wrong answers by page, the HTML of each page."""

    folder: Path
    axe: dict[str, list[str]] = field(default_factory=dict)
    answers: list[str] = field(default_factory=list)  # pages that answered otherwise than planned
    files: dict[str, str] = field(default_factory=dict)  # file name -> page
    visited: set[tuple[str, str]] = field(default_factory=set)
    layout: list[str] = field(default_factory=list)  # pages whose sidebar falls short

    def keep(self, name: str, html: str) -> None:
        file = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:90] + ".html"
        n = 2
        while file in self.files:
            file = f"{file.removesuffix('.html').rsplit('~', 1)[0]}~{n}.html"
            n += 1
        self.files[file] = name
        (self.folder / file).write_text(html)

    def check(self, page: Page, name: str, html: str) -> None:
        self.keep(name, html)
        self.axe[name] = axe_violations(page)
        short = page.evaluate(SIDEBAR_GAP)
        if short:
            self.layout.append(f"{name}: {short}")


class Visitor:
    """One browser context (one person) crawling one site."""

    def __init__(self, crawl: Crawl, context: BrowserContext, site: str, base: str, app):
        self.crawl, self.context, self.site, self.base = crawl, context, site, base
        self.page = context.new_page()
        flask_app = app if site == "console" else app.extensions["portal.tenant_site"]
        self.adapter = flask_app.url_map.bind("localhost")

    def visit(self, path: str, status: int = 200, name: str | None = None) -> None:
        """Go to `path`, which must answer `status` without a redirect, and check it; `name`
        marks an error page, whose path does not count as a visit of the route it matches."""
        response = self.page.goto(self.base + path)
        self.page.wait_for_load_state()
        redirected = response.request.redirected_from is not None
        if response.status != status or redirected:
            moved = f" after a redirect to {self.page.url}" if redirected else ""
            self.crawl.answers.append(
                f"{name or path}: {response.status}{moved} (planned {status})"
            )
        elif name is None:
            endpoint, _ = self.adapter.match(urlsplit(path).path, method="GET")
            self.crawl.visited.add((self.site, endpoint))
        self.crawl.check(self.page, name or f"{self.site} {path}", response.text())

    def state(self, name: str) -> None:
        """Check the page as it is now, after in-page changes (its DOM, serialised)."""
        self.page.wait_for_load_state()
        self.crawl.check(self.page, f"{self.site} {name}", self.page.content())

    def open_panels(self, path: str) -> None:
        self.page.goto(self.base + path)
        for summary in self.page.locator("main details > summary").all():
            summary.click()
        self.page.mouse.move(0, 0)
        self.state(f"{path} with its panels open")

    def form_error(self, path: str, form: str, values: dict, name: str, status: int = 422):
        """Submit `form` on `path` with `values` (browser checks off) and check the answer."""
        self.page.goto(self.base + path)
        with self.page.expect_response(lambda r: r.request.method == "POST") as answer:
            self.page.locator(form).first.evaluate(FILL_AND_SUBMIT, values)
        if answer.value.status != status:
            self.crawl.answers.append(
                f"{self.site} {name}: {answer.value.status} (planned {status})"
            )
        self.page.wait_for_timeout(100)  # htmx swaps (and settles) the answer
        self.state(name)


FILL_AND_SUBMIT = """(form, values) => {
  for (const [name, value] of Object.entries(values)) {
    const el = form.elements[name];
    if (el instanceof HTMLSelectElement && el.multiple) {
      for (const option of el.options) option.selected = value.includes(option.value);
    } else if (el instanceof RadioNodeList) {
      el.value = value;
    } else if (el.type === "checkbox") {
      el.checked = Boolean(value);
    } else {
      el.value = value;
    }
  }
  form.noValidate = true;
  form.requestSubmit();
}"""


@contextmanager
def csrf(app, enabled: bool) -> Iterator[None]:
    previous = app.config["WTF_CSRF_ENABLED"]
    app.config["WTF_CSRF_ENABLED"] = enabled
    try:
        yield
    finally:
        app.config["WTF_CSRF_ENABLED"] = previous


def hand_over(client, context: BrowserContext, app, host: str, port: int) -> None:
    """Give the browser the test client's session cookie for `host`."""
    name = app.config["SESSION_COOKIE_NAME"]
    cookie = client.get_cookie(name, domain=host)
    assert cookie is not None, f"no {name} cookie for {host}"
    context.add_cookies([{"name": name, "value": cookie.value, "url": f"http://{host}:{port}"}])


@pytest.fixture(scope="module")
def _crawls() -> dict:
    return {}


@pytest.fixture
def crawl(
    _crawls,
    app,
    browser,
    live_server,
    client,
    sign_in_as,
    sign_in_site,
    make_staff,
    tmp_path_factory,
    artifacts,
) -> Crawl:
    """The crawl of every page, done once for this module's tests, with its data removed after."""
    if "crawl" in _crawls:
        return _crawls["crawl"]
    found = Crawl(folder=tmp_path_factory.mktemp("pages"))
    with csrf(app, False):
        data = realistic.build(make_staff)
    try:
        _crawl(found, data, app, browser, live_server, client, sign_in_as, sign_in_site, artifacts)
    finally:
        realistic.remove(data)
    _crawls["crawl"] = found
    return found


def second_step(visitor: Visitor, email: str, password: str) -> None:
    """Pass the password step in the browser, which leaves it at the second step's page."""
    visitor.page.goto(visitor.base + "/sign-in")
    visitor.page.get_by_label("Email").fill(email)
    visitor.page.get_by_label("Password").fill(password)
    visitor.page.get_by_role("button", name="Sign in").click()
    visitor.page.wait_for_url("**/sign-in/verify")


def _context(browser) -> BrowserContext:
    # bypass_csp lets axe in; the app's CSP stays as strict as in production.
    context = browser.new_context(
        bypass_csp=True, viewport={"width": 1280, "height": 900}, locale="en-GB"
    )
    context.set_default_timeout(10_000)
    return context


def _crawl(
    found, data, app, browser, live_server, client, sign_in_as, sign_in_site, artifacts
) -> None:
    port = int(live_server.rsplit(":", 1)[1])
    console_url = f"http://localhost:{port}"
    main_host = f"{data.main.slug}.localhost"
    site_url = f"http://{main_host}:{port}"
    planned = argument_pages(data)

    def argless(site: str, signed_in: bool) -> list[str]:
        sites = {"console": app, "site": app.extensions["portal.tenant_site"]}
        return sorted(
            rule.rule
            for rule in sites[site].url_map.iter_rules()
            if "GET" in rule.methods
            and not rule.arguments
            and (site, rule.endpoint) not in EXCLUDED
            and ((site, rule.endpoint) in SIGNED_OUT) != signed_in
        )

    def with_arguments(site: str, signed_in: bool) -> list[tuple[str, int]]:
        return [
            page
            for (s, endpoint), pages in planned.items()
            if s == site and ((s, endpoint) in SIGNED_OUT) != signed_in
            for page in pages
        ]

    def full_page_shot(visitor: Visitor, path: str, file: str) -> None:
        """A full-page screenshot of a long page, to look at the sidebar."""
        visitor.page.goto(visitor.base + path)
        visitor.page.screenshot(path=artifacts / file, full_page=True, animations="disabled")

    with csrf(app, False):
        sign_in_as("platform_admin")
        admin = SimpleNamespace(email=data.admin_email)
        sign_in_site(data.main, admin, DEMO_PASSWORD)

    # Signed out: sign-in pages, links from mail, error pages, forms answered with errors.
    with _context(browser) as context:
        console = Visitor(found, context, "console", console_url, app)
        for path in argless("console", signed_in=False):
            if path != "/sign-in/verify":
                console.visit(path)
        console.form_error(
            "/sign-in",
            "main form",
            {"email": "nobody@msp.example", "password": "not the password"},
            "sign-in, wrong password",
        )
        console.visit("/no-such-page", 404, "console 404")
        site = Visitor(found, context, "site", site_url, app)
        for path in argless("site", signed_in=False):
            if path != "/sign-in/verify":
                site.visit(path)
        for path, status in with_arguments("site", signed_in=False):
            site.visit(path, status)
        site.form_error(
            "/sign-in",
            "main form",
            {"email": data.admin_email, "password": "not the password"},
            "sign-in, wrong password",
        )
        site.form_error("/forgot-password", "main form", {"email": ""}, "forgot password, empty")
        site.form_error("/register", "main form", {"email": "not-an-email"}, "register, bad email")
        site.form_error(
            f"/invitation/{data.invitation_token}",
            "main form",
            {"password": "short", "confirm": "short"},
            "invitation, short password",
        )
        site.form_error(
            f"/reset-password/{data.reset_token}",
            "main form",
            {"password": "short", "confirm": "different"},
            "reset password, short password",
        )
        site.visit("/no-such-page", 404, "site 404")
        Visitor(found, context, "site", f"http://nobody-here.localhost:{port}", app).visit(
            "/", 404, "unknown host"
        )
        Visitor(found, context, "site", f"http://{data.small.slug}.localhost:{port}", app).visit(
            "/sign-in", 403, "suspended tenant's sign-in"
        )
        # The second sign-in step, reached by a user with MFA.
        second_step(site, data.mfa_email, DEMO_PASSWORD)
        site.visit("/sign-in/verify")
        site.form_error(
            "/sign-in/verify", "main form", {"code": "000000"}, "second step, wrong code"
        )
        # The console's second step, reached by a staff member with MFA.
        second_step(console, data.staff_email, PASSWORD)
        console.visit("/sign-in/verify")
        console.form_error(
            "/sign-in/verify", "main form", {"code": "000000"}, "second step, wrong code"
        )

    # MSP staff in the console: every page, tenants of every status, forms with errors.
    with _context(browser) as context:
        hand_over(client, context, app, "localhost", port)
        console = Visitor(found, context, "console", console_url, app)
        for path in argless("console", signed_in=True):
            console.visit(path)
        for path, status in with_arguments("console", signed_in=True):
            console.visit(path, status)
        for path in (
            "/tenants?status=suspended",
            "/tenants?q=no-such-tenant",
            "/audit?action=tenant.suspend",
            "/audit?actor=nobody%40nowhere.example",
        ):
            console.visit(path)
        tenant = f"/tenants/{data.main.slug}"
        console.open_panels(tenant)
        console.form_error(
            "/tenants/new",
            "#tenant-form",
            {"slug": "Not a slug!", "name": ""},
            "new tenant, errors",
        )
        console.form_error(tenant, "#naming", {"name": ""}, "rename, empty")
        console.form_error(
            tenant,
            f"form[action='{tenant}/domains']",
            {"domain": "not a domain"},
            "add domain, invalid",
        )
        console.form_error(
            tenant, f"form[action='{tenant}/limits']", {"max_users": "-5"}, "limits, negative"
        )
        console.form_error(
            tenant, f"form[action='{tenant}/suspend']", {"reason": ""}, "suspend, no reason"
        )
        console.form_error(
            tenant,
            f"form[action='{tenant}/delete']",
            {"confirm_slug": "nope"},
            "delete, wrong slug",
        )
        console.form_error(
            "/staff", "#staff-form", {"email": "not-an-email", "password": "x"}, "add staff, errors"
        )
        console.form_error(
            f"/staff/{data.support_id}/tenants",
            "#staff-assign form",
            {"scope": "some", "tenant_ids": []},
            "assign tenants, none chosen",
        )
        console.open_panels("/account")
        console.form_error(
            "/account",
            "form[action='/account/password']",
            {"current_password": "not the password", "new_password": "short", "confirm": "x"},
            "change password, errors",
        )
        full_page_shot(console, "/audit", "long-console-audit.png")
        full_page_shot(console, "/staff", "long-console-staff.png")
        # A staff visit to the tenant's site: the hand-off, then the banner on every page.
        console.page.goto(console_url + tenant)
        console.page.get_by_role("button", name=re.compile(r"^Open .*users")).click()
        console.page.wait_for_url(f"{site_url}/users")
        visit = Visitor(found, context, "site", site_url, app)
        visit.page = console.page
        visit.state("/users as MSP staff")

    # The tenant admin on the tenant's site: every page, users of every status, forms.
    with _context(browser) as context:
        hand_over(client, context, app, main_host, port)
        site = Visitor(found, context, "site", site_url, app)
        for path in argless("site", signed_in=True):
            site.visit(path)
        for path, status in with_arguments("site", signed_in=True):
            site.visit(path, status)
        for path in (
            "/users?status=invited",
            "/users?status=suspended",
            "/users?status=deleted",
            "/users?q=no-such-person",
            "/audit?action=user.sign_in",
            "/sessions?q=no-such-person",
        ):
            site.visit(path)
        for user_id in data.user_pages.values():
            site.open_panels(f"/users/{user_id}")
        user = f"/users/{data.user_pages['active, with MFA']}"
        site.form_error(
            user,
            f"form[action='{user}/profile']",
            {"email": "not-an-email"},
            "user profile, bad email",
        )
        site.form_error(
            user, f"form[action='{user}/suspend']", {"reason": ""}, "suspend user, no reason"
        )
        site.form_error(
            "/users/invite",
            "#invite",
            {"email": "not-an-email"},
            "invite, bad email",
        )
        site.form_error("/roles/new", "main form[method=post]", {"name": ""}, "new role, no name")
        site.form_error(
            "/consent/new", "#purpose-form form", {"key": "Not A Key"}, "new purpose, bad key"
        )
        site.open_panels("/consent/purposes/product_news")
        site.form_error(
            "/settings/security",
            "#security-settings",
            {"idle_timeout_minutes": "0"},
            "security settings, out of range",
        )
        site.form_error(
            "/account/security",
            "form[action='/account/security']",
            {"current_password": "wrong", "new_password": "short", "confirm": "x"},
            "change password, errors",
        )
        full_page_shot(site, "/users", "long-site-users.png")
        site.page.goto(site_url + "/account/security")
        site.page.get_by_role("button", name="Set up two-factor authentication").click()
        site.page.get_by_text("Scan", exact=False).first.wait_for()
        site.state("/account/security, MFA setup")


def report(found: dict[str, list[str]]) -> str:
    return "\n".join(f"{page}:\n  " + "\n  ".join(lines) for page, lines in found.items() if lines)


def test_every_page_has_no_serious_accessibility_violation(crawl):
    assert not crawl.answers, "pages that did not answer as planned:\n" + "\n".join(crawl.answers)
    assert not any(crawl.axe.values()), report(crawl.axe)


def test_every_long_page_has_its_sidebar_down_to_the_end(crawl):
    assert crawl.layout == []


def test_every_page_is_valid_html(vnu_java, crawl):
    assert len(crawl.files) > 60, sorted(crawl.files.values())
    errors = validate(vnu_java, crawl.folder)
    assert not errors, report(
        {crawl.files.get(name, name): lines for name, lines in errors.items()}
    )


def test_every_page_route_was_visited(app, crawl):
    unvisited = [
        f"{site} {endpoint}"
        for site, endpoints in get_routes(app).items()
        for endpoint in endpoints
        if (site, endpoint) not in EXCLUDED and (site, endpoint) not in crawl.visited
    ]
    assert unvisited == []
