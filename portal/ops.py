"""Health, readiness and metrics endpoints (O1).

- `/healthz` (the process is up) answers on every host, for load balancers probing by address.
- `/readyz` and `/metrics` are served on the base domain only (`web.HostDispatcher` sends a
  tenant's host to the tenant site, which answers them with its 404 page).
- `/metrics` is for the scraper alone: with `METRICS_TOKEN` set, a request must carry
  `Authorization: Bearer <token>` (401 otherwise); without a token, only clients on loopback or
  in `METRICS_ALLOW` (addresses or CIDR networks) are answered (403 otherwise). The address is
  the peer's, or the one `PORTAL_PROXY_COUNT` trusted proxies forwarded.
"""

from __future__ import annotations

import hmac
import ipaddress

from flask import Blueprint, Response, abort, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from portal.db import db
from portal.observability import metrics_text
from portal.queue import queues

bp = Blueprint("ops", __name__)

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    checks = {}
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        queues.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if ready else "unavailable", checks=checks), 200 if ready else 503


def _bearer_token_matches(expected: str) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), expected.encode()
    )


def _client_allowed(allowed: tuple[str, ...]) -> bool:
    try:
        address = ipaddress.ip_address((request.remote_addr or "").split("%")[0])
    except ValueError:
        return False
    if getattr(address, "ipv4_mapped", None):
        address = address.ipv4_mapped
    networks = (*LOOPBACK, *(ipaddress.ip_network(n) for n in allowed))
    return any(address in network for network in networks)


@bp.get("/metrics")
def metrics():
    settings = current_app.config["PORTAL"]
    if settings.metrics_token:
        if not _bearer_token_matches(settings.metrics_token):
            return Response(
                "A bearer token is required.\n",
                status=401,
                mimetype="text/plain",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
    elif not _client_allowed(settings.metrics_allow):
        abort(403)
    return Response(metrics_text(), mimetype=CONTENT_TYPE_LATEST)
