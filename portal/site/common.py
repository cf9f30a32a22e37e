"""What several tenant site page modules share: the sign-in throttle, the base URL of links in
mail, and forgetting a session revoked elsewhere."""

from __future__ import annotations

import re

from flask import current_app, request, url_for
from flask import session as cookie
from flask_login import logout_user

from portal.auth.throttle import SignInThrottle
from portal.queue import queues
from portal.tenancy.routing import normalise_host
from portal.tenancy.urls import host_base_url, tenant_base_url
from portal.web import after_change, current_tenant

_HOST = re.compile(r"^(?:[a-z0-9-]+(?:\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])$")  # a bare host name


def sign_in_throttle() -> SignInThrottle:
    """Failed sign-ins (and wrong re-entered passwords) of this tenant's users."""
    return SignInThrottle(queues.redis, f"user:{current_tenant().slug}")


def site_base_url() -> str:
    """Where links in mail point: the host name this request reached the tenant on (the
    dispatcher only routes hosts of this tenant here) with the configured scheme and port; the
    port in the Host header is the client's choice and never used. Anything odder in the Host
    header falls back to the tenant's own address."""
    settings = current_app.config["PORTAL"]
    host = normalise_host(request.host)
    if _HOST.match(host):
        return host_base_url(host, settings)
    return tenant_base_url(current_tenant(), settings)


def signed_out_here(toast: str):
    """This browser's session is gone (revoked from the sessions page): forget it here too."""
    logout_user()
    cookie.clear()
    return after_change(url_for("site.sign_in"), toast)
