"""The pending second step of a staff sign-in: its count of wrong codes kept on the server.

The state machine is the tenant site's (portal/auth/pending.py): after the password step of a
member with MFA, Redis holds a pending step (whose it is, how many wrong codes it has seen) under
a random id; the signed cookie holds that id with the staff id, a stamp of the password, and
where to go next, for five minutes. Replaying the cookie from just after the password step
therefore finds the same count, or nothing once the limit ended the step: the limit of wrong
codes cannot be reset by the client. The cookie keys are the console's own, so a cookie made by
a tenant site (same secret key) never names a staff member's step.
"""

from __future__ import annotations

import hashlib

from flask import session as cookie

from portal.auth import pending
from portal.queue import queues

PENDING_SECONDS = 5 * 60
ATTEMPTS = 5  # wrong codes before the password step must be done again
COOKIE_KEY = "staff_mfa_pending"
_KEYS = (COOKIE_KEY, "staff_mfa_member", "staff_mfa_stamp", "staff_mfa_next")


def password_stamp(member) -> str:
    """Changes with the password, so a password step done before a change cannot be completed
    after it."""
    return hashlib.sha256(member.password_hash.encode()).hexdigest()[:16]


def begin(member, next_path: str) -> None:
    """Record that `member` passed the password step in this browser."""
    pending_id = pending.start(queues.redis, member.id, seconds=PENDING_SECONDS)
    cookie.clear()
    cookie.update(
        {
            COOKIE_KEY: pending_id,
            "staff_mfa_member": member.id,
            "staff_mfa_stamp": password_stamp(member),
            "staff_mfa_next": next_path,
        }
    )


def current() -> dict | None:
    """The open pending step of this browser: {"staff_id", "stamp", "next"}, or None."""
    staff_id = cookie.get("staff_mfa_member")
    if not isinstance(staff_id, int) or not pending.is_open(
        queues.redis, cookie.get(COOKIE_KEY), staff_id
    ):
        return None
    return {
        "staff_id": staff_id,
        "stamp": str(cookie.get("staff_mfa_stamp") or ""),
        "next": str(cookie.get("staff_mfa_next") or "/"),
    }


def count_failure() -> bool:
    """Count one wrong code; True while the step stays open, False once the limit ended it
    (for every copy of the cookie)."""
    pending_id = cookie.get(COOKIE_KEY)
    if not isinstance(pending_id, str):
        return False
    still_open = pending.failed(queues.redis, pending_id, attempts=ATTEMPTS)
    if not still_open:
        drop()
    return still_open


def drop() -> None:
    pending.end(queues.redis, cookie.get(COOKIE_KEY))
    for key in _KEYS:
        cookie.pop(key, None)
