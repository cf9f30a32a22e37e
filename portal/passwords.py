"""Password hashing with Argon2id, at most a few hash computations at a time per process.

Passwords are hashed in their NFKC form, so the same password typed with another Unicode
composition (a ligature, a full-width digit, a precomposed accent) still verifies.

Parameters (issue 11 §5): Argon2id with m=19 MiB, t=2, p=1, the first of OWASP's equivalent
Argon2id profiles (Password Storage Cheat Sheet). On the 2-core reference machine it costs
~30 ms of CPU and 19 MiB per hash, against ~220 ms and 64 MiB for argon2-cffi's default
(RFC 9106 low-memory: m=64 MiB, t=3, p=4) used before; OWASP's other profile (m=46 MiB, t=1,
p=1) measured ~80 ms here, memory bandwidth being the bottleneck. Cheaper hashing is what lets
the sign-in pages take a burst of attempts without stalling every other page; the per-address
request limit and the account throttle (portal/auth/flood.py, portal/auth/throttle.py) are what
stop online guessing, not the hash cost. A hash made with other parameters is replaced at the
next successful sign-in (`rehashed`).

Every hash computation holds a slot, in two layers, and is refused with `HashingBusy` (a
designed 503 page with Retry-After, portal/errors.py) when it cannot get one:
- one of `concurrency` slots of this process (a semaphore, taken with a short wait), so in a
  threaded server sign-ins queue briefly while the process's other threads serve pages;
- one of `host_concurrency` slots of this machine, shared by all its web processes through
  Redis and taken without waiting. gunicorn's default sync workers serve one request each, so
  a per-process cap alone never binds there: a burst of sign-ins would occupy every worker and
  every page would queue behind it. With the machine-wide cap below the number of workers,
  the other workers answer pages (and refuse the excess sign-ins in ~2 ms) while one hashes.
  Not waiting is deliberate: a sync worker that waits for a slot is a worker not serving pages.
  A slot is a lease (a worker killed mid-hash frees it after `HOST_LEASE_SECONDS`).
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from redis.exceptions import RedisError

from portal.password_policy import normalise

ARGON2_TIME_COST = 2
ARGON2_MEMORY_KIB = 19 * 1024
ARGON2_PARALLELISM = 1

_hasher = PasswordHasher(
    time_cost=ARGON2_TIME_COST,
    memory_cost=ARGON2_MEMORY_KIB,
    parallelism=ARGON2_PARALLELISM,
    type=Type.ID,
)
# Verified against when the account does not exist, so both paths cost the same.
_DUMMY_HASH = _hasher.hash("not a real password, used for constant-time misses")

DEFAULT_CONCURRENCY = 2
DEFAULT_WAIT_SECONDS = 1.0
HOST_LEASE_SECONDS = 10
# Take a machine-wide slot if one is free: drop expired leases, count, add ours.
_TAKE_HOST_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[3]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


class HashingBusy(Exception):
    """Every hashing slot of this process stayed taken for the whole wait: answer 503."""

    retry_after = 2  # seconds, for the Retry-After header


class _Slots:
    """This process's hashing slots (a semaphore) and how long a hash may wait for one."""

    def __init__(self) -> None:
        self.configure(DEFAULT_CONCURRENCY, DEFAULT_WAIT_SECONDS)

    def configure(
        self,
        concurrency: int,
        wait_seconds: float,
        host_concurrency: int = 0,
        redis: Callable | None = None,
    ) -> None:
        if concurrency < 1 or host_concurrency < 0:
            raise ValueError("password hashing needs at least one slot")
        self.concurrency = concurrency
        self.wait_seconds = wait_seconds
        self.semaphore = threading.BoundedSemaphore(concurrency)
        self.host_concurrency = host_concurrency if redis is not None else 0
        self.redis = redis
        self.host_key = f"hashing:{socket.gethostname()}"

    def take(self) -> Callable[[], None]:
        """Take a slot of each layer, or raise `HashingBusy`; returns what gives them back."""
        semaphore = self.semaphore  # released on the one it was taken from, even if reconfigured
        if not semaphore.acquire(timeout=self.wait_seconds):
            raise HashingBusy()
        if not self.host_concurrency:
            return semaphore.release
        try:
            redis, lease = self.redis(), secrets.token_hex(8)
            taken = redis.register_script(_TAKE_HOST_SLOT)(
                keys=[self.host_key],
                args=[time.time(), self.host_concurrency, HOST_LEASE_SECONDS, lease],
            )
        except BaseException:
            semaphore.release()
            raise
        if not taken:
            semaphore.release()
            raise HashingBusy()
        key = self.host_key

        def release() -> None:
            try:
                redis.zrem(key, lease)
            except RedisError:
                pass  # the lease expires by itself
            finally:
                semaphore.release()

        return release

    @contextmanager
    def slot(self):
        if getattr(_held, "release", None) is not None:  # this request holds one already
            yield
            return
        release = self.take()
        try:
            yield
        finally:
            release()


_held = threading.local()
_slots = _Slots()


def configure_hashing(
    *,
    concurrency: int,
    wait_seconds: float,
    host_concurrency: int = 0,
    redis: Callable | None = None,
) -> None:
    """Set the hashing slots (the app factory passes the settings). Without `redis` (a callable
    returning the client) or with `host_concurrency` 0 there is no machine-wide cap, as in the
    CLI."""
    _slots.configure(concurrency, wait_seconds, host_concurrency, redis)


def hold_slot() -> None:
    """Take a hashing slot for the rest of this request (this thread) before doing anything
    else, so an attempt that would be refused costs no database or throttle work first; the
    hashes made meanwhile use it. `release_slot` gives it back (a request teardown)."""
    if getattr(_held, "release", None) is None:
        _held.release = _slots.take()


def release_slot() -> None:
    release, _held.release = getattr(_held, "release", None), None
    if release is not None:
        release()


def hash_password(password: str) -> str:
    with _slots.slot():
        return _hasher.hash(normalise(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches; always spends one Argon2 verification.

    Hashes made before passwords were normalised hold the password as typed, so a miss on the
    normal form is retried with the typed form when the two differ. That second verification
    depends only on what was typed, not on whether the account exists.
    """
    normal = normalise(password)
    with _slots.slot():
        if _verify(password_hash, normal):
            return True
        return normal != password and _verify(password_hash, password)


def rehashed(password_hash: str | None, password: str) -> str | None:
    """A new hash of `password` (just verified against `password_hash`) when the stored hash
    was made with other parameters; None when it is current, or when no hashing slot is free
    (the next sign-in tries again: a busy portal should not refuse a right password)."""
    try:
        if not password_hash or not _hasher.check_needs_rehash(password_hash):
            return None
    except InvalidHashError:
        return None
    try:
        return hash_password(password)
    except HashingBusy:
        return None


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
