"""Host → tenant, with a small per-process cache.

A host is either the base domain (the platform console), a tenant's custom domain, or
`<slug>.<base domain>`. Lookups are cached for a few seconds as plain snapshots; changes made
in this process clear the cache after commit, other processes see them within the TTL.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from sqlalchemy import select

from portal.db import db

TTL_SECONDS = 5.0
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class TenantRef:
    """What a request needs to know about its tenant, detached from any session."""

    id: int
    slug: str
    name: str
    status: str
    suspended_reason: str | None
    max_users: int | None

    @property
    def active(self) -> bool:
        return self.status == "active"


PLATFORM = "platform"
_cache: dict[str, tuple[float, TenantRef | str | None]] = {}
_lock = threading.Lock()


def invalidate() -> None:
    with _lock:
        _cache.clear()


def normalise_host(host: str) -> str:
    host = (host or "").strip().lower().rstrip(".")
    if host.startswith("["):  # IPv6 literal
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if ":" in host else host


def resolve(host: str, base_domain: str) -> TenantRef | str | None:
    """PLATFORM for the base domain, a TenantRef for a tenant's host, None for anything else."""
    host = normalise_host(host)
    now = time.monotonic()
    hit = _cache.get(host)
    if hit and hit[0] > now:
        return hit[1]
    result = _lookup(host, base_domain)
    with _lock:
        if len(_cache) >= MAX_ENTRIES:
            _cache.clear()
        _cache[host] = (now + TTL_SECONDS, result)
    return result


def _lookup(host: str, base_domain: str) -> TenantRef | str | None:
    from portal.tenancy.models import Tenant, TenantDomain

    if host in (base_domain, "127.0.0.1", "[::1]"):
        return PLATFORM
    query = select(Tenant)
    if host.endswith("." + base_domain) and host.count(".") == base_domain.count(".") + 1:
        query = query.where(Tenant.slug == host[: -len(base_domain) - 1])
    else:
        query = query.join(TenantDomain).where(TenantDomain.domain == host)
    with db.platform_scope() as session:
        tenant = session.scalars(query).first()
        if tenant is None or tenant.status == "deleted":
            return None
        return TenantRef(
            id=tenant.id,
            slug=tenant.slug,
            name=tenant.name,
            status=tenant.status,
            suspended_reason=tenant.suspended_reason,
            max_users=tenant.max_users,
        )
