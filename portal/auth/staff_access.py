"""MSP staff opening a tenant's site (A8, "help a tenant"): a one-time hand-off, then a visit.

The console and each tenant site live on different hosts, so they share no cookie. The console
writes a grant (who, which tenant, which role) to Redis under a random token valid for 60
seconds and redirects the browser to `<tenant host>/staff-access/<token>`; the tenant site
takes the grant once (GETDEL) and starts a visit: a server-side record in Redis keyed by the
hash of a new random token, which becomes the site's session cookie. Visits end after 30 idle
minutes or 2 hours, and at sign-out.

Redis is not trusted to end a visit in time: the visit records the console session that
started it, and every request of the visit asks the database (`recheck`, one call of the
SECURITY DEFINER function `platform_access.staff_visit`, which a tenant role may execute
without any privilege on the platform schema) for the staff member's current role, whether
they are still active and assigned to this tenant, and whether that console session still
lives. A deactivated member, a console sign-out or a revoked session ends the visit on its next
request even if the Redis clean-up (`end_staff_visits`, `end_console_visits`) never ran; a role
change applies from the next request. Whether the console session used a second factor comes
from the same call, so a tenant whose MFA policy applies to the visit can refuse it.
The console's idle timeout is not applied to the visit's console session: the member is at
work in the visit, whose own idle timeout (30 minutes) is the shorter one.

A visit holds the staff role's permissions that apply inside a tenant (support: read-only);
every page and action checks them like a tenant user's. The hand-off is audited at both ends,
by `hand_off` in the platform trail (console) and by `admit_visit` in the tenant's trail (site),
a refusal included; the grant and the visit reach Redis only once the request that made them
commits. Every action during the visit is recorded in the tenant's trail with the staff member
as actor.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from redis import Redis
from sqlalchemy import text
from sqlalchemy.orm import Session

from portal.accounts.settings import mfa_enforced_for, security_settings
from portal.compliance.audit import Actor, AuditAction, record
from portal.db import on_commit
from portal.permissions import STAFF_ROLE_PERMISSIONS, TENANT_PERMISSIONS
from portal.sessions import token_hash

if TYPE_CHECKING:
    from portal.staff.models import StaffUser
    from portal.tenancy.models import Tenant

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
    console_session_id: int = 0  # the staff session that made the hand-off
    mfa: bool = False  # whether that session used a second factor (as rechecked)

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


def _console_index_key(console_session_id: int) -> str:
    return f"staffaccess:console:{console_session_id}"


def hand_off(
    session: Session,
    redis: Redis,
    tenant: Tenant,
    *,
    staff: StaffUser,
    console_session_id: int,
    mfa: bool,
    actor: Actor,
) -> str:
    """The console's end: a one-time token for `tenant`'s site (valid 60 s from the commit),
    recorded in the platform trail. `mfa`: whether the console session used a second factor."""
    token = secrets.token_urlsafe(32)
    payload = {
        "staff_id": staff.id,
        "email": staff.email,
        "name": staff.name,
        "role": staff.role,
        "tenant_slug": tenant.slug,
        "console_session_id": console_session_id,
    }
    record(
        session,
        AuditAction.STAFF_TENANT_ACCESS,
        actor=actor,
        target=("tenant", tenant.id),
        detail={"role": staff.role, "mfa": mfa},
    )
    on_commit(session, lambda: redis.set(_grant_key(token), json.dumps(payload), ex=GRANT_SECONDS))
    return token


def take_grant(redis: Redis, token: str, tenant_slug: str) -> Visit | None:
    """Take the grant (once): the visit it allows, not yet started, or None when the token is
    unknown, used, expired or meant for another tenant."""
    if not token or len(token) > 200:
        return None
    raw = redis.getdel(_grant_key(token))
    if raw is None:
        return None
    payload = json.loads(raw)
    if payload["tenant_slug"] != tenant_slug:
        return None
    return Visit(**payload, started_at=time.time())


def admit_visit(session: Session, redis: Redis, visit: Visit, *, actor: Actor) -> str | None:
    """The tenant site's end, for a grant taken and rechecked: the site session token of the
    visit (started in Redis once the request commits), recorded in the tenant's trail.

    None when the tenant's MFA policy applies to the visit's permissions and the console
    session used no second factor; that refusal is recorded too, and kept though the refusing
    request rolls back."""
    target = ("tenant", visit.tenant_slug)
    if not visit.mfa and mfa_enforced_for(security_settings(session), visit.permissions):
        record(
            session,
            AuditAction.STAFF_TENANT_ACCESS,
            actor=actor,
            target=target,
            detail={"role": visit.role, "mfa": False, "refused": "mfa_required"},
            keep=True,
        )
        return None
    record(
        session,
        AuditAction.STAFF_TENANT_ACCESS,
        actor=actor,
        target=target,
        detail={"role": visit.role, "permissions": sorted(visit.permissions), "mfa": visit.mfa},
    )
    session_token = VISIT_PREFIX + secrets.token_urlsafe(32)
    on_commit(session, lambda: _start_visit(redis, session_token, visit))
    return session_token


def _start_visit(redis: Redis, session_token: str, visit: Visit) -> None:
    key = _visit_key(session_token)
    with redis.pipeline() as pipe:
        pipe.set(key, json.dumps(visit.__dict__), ex=VISIT_IDLE_SECONDS)
        for index in (_index_key(visit.staff_id), _console_index_key(visit.console_session_id)):
            pipe.sadd(index, key)
            pipe.expire(index, VISIT_ABSOLUTE_SECONDS)
        pipe.execute()


def recheck(session: Session, visit: Visit, tenant_id: int) -> Visit | None:
    """The visit with the staff member's current role and MFA use, read from the database in
    one call; None when the member is inactive, no longer assigned to the tenant, or the
    console session that started the visit has ended. Runs under the tenant's role."""
    row = session.execute(
        text("SELECT role, mfa FROM platform_access.staff_visit(:session_id, :staff_id, :tenant)"),
        {
            "session_id": visit.console_session_id,
            "staff_id": visit.staff_id,
            "tenant": tenant_id,
        },
    ).first()
    if row is None:
        return None
    return replace(visit, role=row.role, mfa=bool(row.mfa))


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


def end_console_visits(redis: Redis, console_session_id: int) -> int:
    """End every visit started from one console session (signed out or revoked)."""
    index = _console_index_key(console_session_id)
    keys = [k.decode() if isinstance(k, bytes) else k for k in redis.smembers(index)]
    ended = redis.delete(*keys) if keys else 0
    redis.delete(index)
    return ended


def end_staff_visits(redis: Redis, staff_id: int) -> int:
    """End every visit of a staff member (deactivated, or role changed); returns how many."""
    keys = [k.decode() if isinstance(k, bytes) else k for k in redis.smembers(_index_key(staff_id))]
    ended = redis.delete(*keys) if keys else 0
    redis.delete(_index_key(staff_id))
    return ended
