"""Request plumbing shared by the console and the tenant sites.

- HostDispatcher routes a request by Host to the console app or the tenant-site app.
- Each request gets an id (X-Request-ID if the client sent a sane one) for logs and audit.
- Each request owns one transaction: `request_session()` opens it lazily (platform scope on the
  console, tenant scope with `SET LOCAL ROLE` on a tenant site); it commits after a successful
  response and rolls back otherwise, then writes again what was kept (a refusal's audit entry,
  `record(..., keep=True)`) in a transaction of its own.
- `render_page` renders a whole page, or just one block of it for an HTMX request;
  `after_change` answers a change made (the changed block with a toast event for HTMX, else a
  303 with the toast flashed), `see_other` goes on after a POST, and `full_page_redirect`
  leaves the page (HX-Redirect for HTMX).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from flask import (
    Flask,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
)
from jinja2_fragments.flask import render_block
from markupsafe import Markup, escape
from sqlalchemy.orm import Session

from portal.compliance.audit import Actor
from portal.db import db, write_kept
from portal.tenancy import routing
from portal.tenancy.routing import TenantRef

# Liveness answers on every host (a load balancer may probe by address). Readiness and metrics
# are for operators: served on the base domain only, so a tenant's host (custom domains
# included) answers them with its designed 404 (issue 11 §6); /metrics also checks a token or
# the client's address (portal/ops.py).
ALWAYS_PLATFORM_PATHS = ("/healthz",)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class HostDispatcher:
    """WSGI middleware: base domain → console app, tenant host → site app, else a 404 page."""

    def __init__(self, platform_wsgi, site_wsgi, settings):
        self.platform_wsgi = platform_wsgi
        self.site_wsgi = site_wsgi
        self.settings = settings

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path in ALWAYS_PLATFORM_PATHS:
            return self.platform_wsgi(environ, start_response)
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
        target = routing.resolve(host, self.settings.base_domain)
        if isinstance(target, TenantRef):
            environ["portal.tenant"] = target
            return self.site_wsgi(environ, start_response)
        if target is None:
            environ["portal.unknown_host"] = routing.normalise_host(host)
        return self.platform_wsgi(environ, start_response)


def current_tenant() -> TenantRef | None:
    return request.environ.get("portal.tenant")


def request_session() -> Session:
    """The request's one transaction, opened on first use."""
    if "db_session" not in g:
        tenant = current_tenant()
        g.db_session = db.open_tenant_session(tenant) if tenant else _platform_session()
    return g.db_session


def _platform_session() -> Session:
    session = db.session()
    session.begin()
    return session


def client_addr() -> str | None:
    return request.remote_addr


def actor_for(kind: str, id_, label: str | None) -> Actor:
    return Actor(
        type=kind,
        id=None if id_ is None else str(id_),
        label=label,
        client_addr=client_addr(),
        request_id=g.get("request_id"),
    )


def wants_fragment() -> bool:
    return (
        request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-Boosted") != "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


def render_page(
    template: str, block: str | None = None, *, status: int = 200, **context
) -> Response:
    """The whole page, or only `block` of it when HTMX asked for a fragment."""
    if block and wants_fragment():
        body = render_block(template, block, **context)
    else:
        body = render_template(template, **context)
    return Response(body, status=status, mimetype="text/html")


def local_path(target: str | None, default: str, *, under: str | None = None) -> str:
    """`target` if it is a path on this host (and, with `under`, that page with any query),
    else `default`: redirects taken from a request never lead off-site."""
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and not any(ord(c) < 32 or ord(c) == 127 for c in target)
        and (under is None or target == under or target.startswith(under + "?"))
    ):
        return target
    return default


def see_other(location: str) -> Response:
    """Go on to `location` after a POST: 303 for a plain form, HX-Location for HTMX (htmx loads
    it in place of the page without a full reload)."""
    if request.headers.get("HX-Request") == "true":
        response = Response(status=204)
        response.headers["HX-Location"] = location
        return response
    return redirect(location, code=303)


def after_change(
    location: str,
    toast: str | None = None,
    *,
    fragment: Callable[[], Response] | None = None,
    events: Iterable[str] = (),
) -> Response:
    """The answer to a change made, for HTMX and a plain form alike.

    When HTMX asks for a fragment and there is one: `fragment()` (the changed block) with an
    `HX-Trigger` carrying the toast and `events`, which other parts of the page listen to so
    they refresh themselves. Otherwise `see_other(location)`, the toast flashed for that page.
    """
    if fragment is not None and wants_fragment():
        response = fragment()
        triggers = {"toast": toast} if toast else {}
        triggers.update(dict.fromkeys(events, True))
        if triggers:
            response.headers["HX-Trigger"] = json.dumps(triggers)
        return response
    if toast:
        flash(toast, "success")
    return see_other(location)


def full_page_redirect(location: str) -> Response:
    """Send the browser to `location` as a new page (to sign in, or to enrol in MFA): for HTMX
    an HX-Redirect, since a plain redirect would put that page where a fragment belongs."""
    if request.headers.get("HX-Request") == "true":
        response = Response(status=204)
        response.headers["HX-Redirect"] = location
        return response
    return redirect(location)


def _begin_request() -> None:
    supplied = request.headers.get("X-Request-ID", "")
    g.request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
    g.started = time.perf_counter()
    unknown = request.environ.get("portal.unknown_host")
    if unknown is not None:
        g.unknown_host = unknown
        abort(404)
    if _has_nul(request):
        abort(400)  # PostgreSQL text cannot hold NUL; no form or link of ours sends one


def _has_nul(req) -> bool:
    if "\x00" in req.path:
        return True
    values = [*req.args.values(), *(req.form.values() if req.method == "POST" else ())]
    return any("\x00" in value for value in values)


def _finish_request(response: Response) -> Response:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        try:
            if response.status_code < 400:
                session.commit()
            else:
                session.rollback()
                write_kept(session)  # a refusal's audit entry outlives the rollback
        finally:
            session.close()
    response.headers["X-Request-ID"] = g.get("request_id", "")
    response.vary.add("HX-Request")
    return response


def _close_request(exc: BaseException | None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        try:
            session.rollback()
            write_kept(session)
        finally:
            session.close()


def ago(value: datetime | None) -> str:
    if value is None:
        return "never"
    if value.tzinfo is None:  # RQ hands out naive UTC times
        value = value.replace(tzinfo=UTC)
    seconds = int((datetime.now(UTC) - value).total_seconds())
    if seconds < 0:
        seconds = -seconds
        prefix, suffix = "in ", ""
    else:
        prefix, suffix = "", " ago"
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            n = seconds // size
            label = f"{n} {unit}{'s' if unit == 'day' and n != 1 else ''}"
            return f"{prefix}{label}{suffix}"
    return "just now" if not prefix else "in a moment"


def exact(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def detail(value) -> str:
    """An audit detail value as a person reads it."""
    if value is None:
        return "none"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k} {detail(v)}" for k, v in value.items())
    return str(value)


STATUS_LABELS = {
    "active": "Active",
    "suspended": "Suspended",
    "deleted": "Deleted",
    "invited": "Invited",
}


def status_badge(status: str) -> Markup:
    """Status as text plus colour (never colour alone). A function, not a macro: lists call
    it once per row, and a Jinja macro call costs several times more."""
    label = STATUS_LABELS.get(status) or str(status).capitalize()
    status = escape(status)
    return Markup(
        f'<span class="badge status-badge status-{status}"><span class="status-dot" '
        f'aria-hidden="true"></span> {escape(label)}</span>'
    )


def when(value: datetime | None) -> Markup:
    """A relative time ("3 min ago") with the exact UTC time on hover (app.js localises it)."""
    if value is None:
        return Markup("never")
    if value.tzinfo is None:  # RQ hands out naive UTC times
        value = value.replace(tzinfo=UTC)
    # HTML allows at most three fraction digits in a datetime (the validator rejects six).
    machine = value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return Markup(
        f'<time datetime="{escape(machine)}" title="{escape(exact(value))}">'
        f"{escape(ago(value))}</time>"
    )


def first_focus() -> bool:
    """True the first time a request asks: HTML allows one `autofocus` in a page, so a form
    with several errors focuses the first of them (the form macros ask before setting it)."""
    if g.get("autofocus_taken"):
        return False
    g.autofocus_taken = True
    return True


def init_app(app: Flask) -> None:
    app.add_template_global(status_badge)
    app.add_template_global(when)
    app.add_template_global(first_focus)
    app.add_template_filter(detail)
    app.add_template_filter(ago)
    app.add_template_filter(exact)
    app.before_request(_begin_request)
    app.after_request(_finish_request)
    app.teardown_request(_close_request)

    @app.context_processor
    def _globals():
        return {
            "tenant": current_tenant(),
            "settings": current_app.config["PORTAL"],
            "request_id": g.get("request_id"),
        }
