"""MSP staff opening a tenant's site (A8, "help a tenant"): a one-time hand-off, then a visit.

The console and each tenant site live on different hosts, so they share no cookie. The console
writes a grant (who, which tenant, which role) to Redis under a random token valid for 60
seconds and redirects the browser to `<tenant host>/staff-access/<token>`; the tenant site
takes the grant once (GETDEL) and starts a visit: a server-side record in Redis keyed by the
hash of a new random token, which becomes the site's session cookie. Visits end after 30 idle
minutes or 2 hours, at sign-out, and at once when the staff member is deactivated or changes
role (`end_staff_visits`).

A visit holds the staff role's permissions that apply inside a tenant (support: read-only);
every page and action checks them like a tenant user's. The hand-off is audited in the
platform trail (console) and in the tenant's trail (site); every action during the visit is
recorded in the tenant's trail with the staff member as actor.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass

from redis import Redis

from portal.permissions import STAFF_ROLE_PERMISSIONS, TENANT_PERMISSIONS
from portal.sessions import token_hash

GRANT_SECONDS = 60
VISIT_IDLE_SECONDS = 30 * 60
VISIT_ABSOLUTE_SECONDS = 2 * 60 * 60
VISIT_PREFIX = "staff:"  # site session tokens of visits start with this


@dataclass(frozen=True)
class Visit:
    staff_id: int
    email: str
    name: str
    role: str
    tenant_slug: str
    started_at: float

    @property
    def permissions(self) -> frozenset[str]:
        return frozenset(
            STAFF_ROLE_PERMISSIONS.get(self.role, frozenset()) & set(TENANT_PERMISSIONS)
        )


def _grant_key(token: str) -> str:
    return f"staffaccess:grant:{token_hash(token)}"


def _visit_key(token: str) -> str:
    return f"staffaccess:visit:{token_hash(token)}"


def _index_key(staff_id: int) -> str:
    return f"staffaccess:staff:{staff_id}"


def grant(
    redis: Redis, *, staff_id: int, email: str, name: str, role: str, tenant_slug: str
) -> str:
    """A one-time hand-off token for the tenant site (60 s)."""
    token = secrets.token_urlsafe(32)
    payload = {
        "staff_id": staff_id,
        "email": email,
        "name": name,
        "role": role,
        "tenant_slug": tenant_slug,
    }
    redis.set(_grant_key(token), json.dumps(payload), ex=GRANT_SECONDS)
    return token


def redeem(redis: Redis, token: str, tenant_slug: str) -> tuple[str, Visit] | None:
    """Take the grant (once) and start a visit: (site session token, visit), or None when the
    token is unknown, used, expired or meant for another tenant."""
    if not token or len(token) > 200:
        return None
    raw = redis.getdel(_grant_key(token))
    if raw is None:
        return None
    payload = json.loads(raw)
    if payload["tenant_slug"] != tenant_slug:
        return None
    visit = Visit(**payload, started_at=time.time())
    session_token = VISIT_PREFIX + secrets.token_urlsafe(32)
    key = _visit_key(session_token)
    with redis.pipeline() as pipe:
        pipe.set(key, json.dumps(visit.__dict__), ex=VISIT_IDLE_SECONDS)
        pipe.sadd(_index_key(visit.staff_id), key)
        pipe.expire(_index_key(visit.staff_id), VISIT_ABSOLUTE_SECONDS)
        pipe.execute()
    return session_token, visit


def load(redis: Redis, session_token: str, tenant_slug: str) -> Visit | None:
    """The live visit for a site session token (its idle timer restarted), or None."""
    key = _visit_key(session_token)
    raw = redis.get(key)
    if raw is None:
        return None
    visit = Visit(**json.loads(raw))
    if visit.tenant_slug != tenant_slug or time.time() - visit.started_at > VISIT_ABSOLUTE_SECONDS:
        redis.delete(key)
        return None
    redis.expire(key, VISIT_IDLE_SECONDS)
    return visit


def end(redis: Redis, session_token: str) -> None:
    redis.delete(_visit_key(session_token))


def end_staff_visits(redis: Redis, staff_id: int) -> int:
    """End every visit of a staff member (deactivated, or role changed); returns how many."""
    keys = [k.decode() if isinstance(k, bytes) else k for k in redis.smembers(_index_key(staff_id))]
    ended = redis.delete(*keys) if keys else 0
    redis.delete(_index_key(staff_id))
    return ended
