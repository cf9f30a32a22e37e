"""The pending second sign-in step, kept on the server (issue 11 §6).

After the password step of a user with MFA, the browser's signed cookie names a random pending
id; Redis holds, under that id, whose step it is and how many wrong codes it has seen. The
count therefore cannot be reset by replaying the cookie from before the wrong codes: the
`attempts`-th wrong code ends the step for every copy of the cookie, as does a completed
sign-in (a pending id is used once). Records expire with the step (`seconds`).
"""

from __future__ import annotations

import secrets

from redis import Redis

KEY_PREFIX = "sign_in:pending"

# Count one wrong code; end the step at the limit. -1: no such step (ended, expired, forged).
_FAILED = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    return -1
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if failures >= tonumber(ARGV[1]) then
    redis.call('DEL', KEYS[1])
end
return failures
"""


def _key(pending_id: str) -> str:
    return f"{KEY_PREFIX}:{pending_id}"


def start(redis: Redis, user_id: int, *, seconds: int) -> str:
    """A new pending step for `user_id`; returns its id (for the signed cookie)."""
    pending_id = secrets.token_urlsafe(24)
    with redis.pipeline() as pipe:
        pipe.hset(_key(pending_id), mapping={"user": user_id, "failures": 0})
        pipe.expire(_key(pending_id), seconds)
        pipe.execute()
    return pending_id


def is_open(redis: Redis, pending_id: object, user_id: int) -> bool:
    """True while the step `pending_id` of `user_id` has not ended or expired."""
    if not isinstance(pending_id, str) or not 0 < len(pending_id) <= 64:
        return False
    owner = redis.hget(_key(pending_id), "user")
    return owner is not None and owner.decode() == str(user_id)


def failed(redis: Redis, pending_id: str, *, attempts: int) -> bool:
    """Count a wrong code; True when the step is still open, False once it has ended."""
    failures = redis.register_script(_FAILED)(keys=[_key(pending_id)], args=[attempts])
    return 0 <= int(failures) < attempts


def end(redis: Redis, pending_id: object) -> None:
    if isinstance(pending_id, str) and 0 < len(pending_id) <= 64:
        redis.delete(_key(pending_id))
