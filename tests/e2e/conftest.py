"""Browser fixtures: the portal served on a real port, and Chromium driven by Playwright.

The server runs in a thread of the test process, against the same database as the `app`
fixture, so tests create their staff and tenants with the ordinary fixtures and clean up the
same way. The browser talks to it with CSRF protection on, as in production.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
TIMEOUT_MS = 5_000
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Nothing leaves the machine: every host but localhost (and its subdomains) fails to resolve.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE *.localhost, "
    "EXCLUDE 127.0.0.1",
]


@pytest.fixture(scope="session")
def _server(app) -> Iterator[int]:
    """The app on 127.0.0.1 and a free port for the whole session; yields the port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="e2e-live-server", daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


@pytest.fixture
def live_server(app, _server) -> Iterator[str]:
    """Base URL of the running portal (http://localhost:PORT), with CSRF enabled for this test.

    Per test rather than per session: the `client` fixture of other tests switches CSRF off
    on the same app object, and tests from both kinds may interleave.
    """
    previous = app.config.get("WTF_CSRF_ENABLED")
    settings = app.config["PORTAL"]
    app.config["WTF_CSRF_ENABLED"] = True
    # Links in mail carry the configured port (never the Host header's): configure the one
    # this server listens on, as a deployment sets PORT.
    app.config["PORTAL"] = dataclasses.replace(settings, port=_server)
    try:
        yield f"http://localhost:{_server}"
    finally:
        app.config["WTF_CSRF_ENABLED"] = previous
        app.config["PORTAL"] = settings


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        reason = f"end-to-end tests need Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("PORTAL_REQUIRE_E2E") == "1":
            pytest.fail(f"PORTAL_REQUIRE_E2E=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, live_server):
    """A fresh browser context (no cookies) and page, 1280 px wide, short timeouts."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots go: tests/artifacts (git-ignored), or PORTAL_SCREENSHOTS_DIR
    (`make screenshots` refreshes the README's images in docs/screenshots)."""
    folder = Path(os.environ.get("PORTAL_SCREENSHOTS_DIR") or ARTIFACTS)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def vnu_java() -> str:
    """The `java` that runs the Nu HTML Checker, with vnu.jar in place (fetched from npm by
    scripts/vendor-vnu.sh on first use). Without them the validator test skips with the reason,
    or fails under PORTAL_REQUIRE_E2E=1 (CI), like the browser tests."""
    import shutil
    import subprocess

    from tests.e2e.checkers import VNU_JAR, VNU_SCRIPT

    java = shutil.which("java")
    reason = None
    if java is None:
        reason = "the HTML validator needs Java 11 or newer (apt-get install default-jre-headless)"
    elif not VNU_JAR.exists():
        if shutil.which("npm"):
            subprocess.run([str(VNU_SCRIPT)], capture_output=True, timeout=300, check=False)
        if not VNU_JAR.exists():
            reason = (
                f"the HTML validator needs {VNU_JAR} (scripts/vendor-vnu.sh fetches it from npm)"
            )
    if reason is not None:
        if os.environ.get("PORTAL_REQUIRE_E2E") == "1":
            pytest.fail(f"PORTAL_REQUIRE_E2E=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return java
