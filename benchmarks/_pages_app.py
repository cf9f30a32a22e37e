"""WSGI entries for benchmarks/pages.py (gunicorn `_pages_app:portal_app()` / `bare_app()`).

`portal_app()` is the real portal, configured from the BENCH_APP_* variables that pages.py
sets; pages.py uses it only when the repository has no wsgi.py (else `wsgi:app`). `bare_app()` is a Flask app without database, sign-in, CSRF or middleware that renders
the same template, templates/console/tenants.html with its console layout, for 25 fixed rows:
the reference for what Flask and Jinja cost on this machine.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def portal_app():
    from portal import create_app

    return create_app(
        {
            "database_url": os.environ["BENCH_APP_DATABASE_URL"],
            "redis_url": os.environ["BENCH_APP_REDIS_URL"],
            "secret_key": os.environ["BENCH_APP_SECRET_KEY"],
            "log_level": "WARNING",
        }
    )


def bare_app():
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from flask import Blueprint, Flask, render_template, url_for

    from portal.console.tenants_views import TENANTS
    from portal.pagination import Listing, encode_cursor
    from portal.permissions import Permission
    from portal.tenancy.models import TenantStatus
    from portal.web import ago, detail, exact, status_badge, when

    app = Flask(
        "bench_bare",
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    now = datetime.now(UTC)
    rows = [
        SimpleNamespace(
            name=f"Bench tenant {i:02d}",
            slug=f"bench-p-{i:04d}",
            status="active",
            domains=[],
            max_users=None,
            migration_error=None,
            schema_revision="0001",
            created_at=now - timedelta(minutes=i),
        )
        for i in range(25)
    ]
    staff = SimpleNamespace(
        is_authenticated=True, display_name="bench@msp.example", role="platform_admin"
    )
    bp = Blueprint("console", __name__)

    def link(**args):
        return url_for("console.tenants", **args)

    @bp.get("/tenants")
    def tenants():
        # The context of console.tenants's render_page call: one page of the list machinery.
        query = TENANTS.parse({})
        listing = Listing(rows, 30, encode_cursor(("c" * 40,)), None, query, link)
        return render_template(
            "console/tenants.html",
            tenants=listing,
            statuses=list(TenantStatus),
            head="0001",
        )

    def stub(**_):
        return ""

    bp.add_url_rule("/tenants/<slug>", "tenant", stub)
    app.register_blueprint(bp)

    def other_endpoint(error, endpoint, values):
        # Nav links and buttons point at console views this app does not have; a URL of
        # about the same length keeps the page comparable.
        return "/" + endpoint.rpartition(".")[2].replace("_", "-")

    app.url_build_error_handlers.append(other_endpoint)
    # The same template helpers as the portal (portal.web.init_app).
    app.add_template_filter(ago, "ago")
    app.add_template_filter(exact, "exact")
    app.add_template_filter(detail, "detail")
    app.add_template_global(status_badge)
    app.add_template_global(when)

    @app.context_processor
    def _context():
        return {
            "can": lambda permission: True,
            "Permission": Permission,
            "current_user": staff,
            "csrf_token": lambda: "bench-csrf-token",
            "request_id": "bench",
            "tenant": None,
            "settings": None,
        }

    return app
