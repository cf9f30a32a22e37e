"""Absolute URLs of a tenant's site, for links made outside a request (CLI, jobs, mail)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from portal.config import Settings
    from portal.tenancy.models import Tenant
    from portal.tenancy.routing import TenantRef

DEFAULT_PORTS = {"http": 80, "https": 443}


def tenant_host(tenant: Tenant | TenantRef, settings: Settings) -> str:
    """The tenant's first custom domain, else `<slug>.<base domain>`.

    A TenantRef carries no domains, so it always gets the slug host (which also answers)."""
    domains = getattr(tenant, "domains", None) or ()
    if domains:
        first = domains[0]
        return getattr(first, "domain", first)
    return f"{tenant.slug}.{settings.base_domain}"


def tenant_base_url(tenant: Tenant | TenantRef, settings: Settings) -> str:
    """`scheme://host[:port]` of the tenant's site, without a trailing slash."""
    return host_base_url(tenant_host(tenant, settings), settings)


def host_base_url(host: str, settings: Settings) -> str:
    """`scheme://host[:port]` for one of a tenant's hosts (a bare name, no port), with the
    configured scheme and port: never a port taken from a request's Host header, which the
    client chooses (a reset link mailed to an attacker's port would be a leak).

    The port is added only where the app serves it directly: on a localhost base domain or in
    development. In production a proxy answers on the scheme's default port."""
    scheme = settings.url_scheme
    url = f"{scheme}://{host}"
    local = settings.base_domain == "localhost" or settings.base_domain.endswith(".localhost")
    if (local or settings.env == "development") and settings.port != DEFAULT_PORTS.get(scheme):
        url += f":{settings.port}"
    return url
