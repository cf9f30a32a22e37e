"""A per-client-address request limit on the endpoints that hash a password (issue 11 §5).

A flood of sign-ins costs the portal one Argon2 computation per attempt; the account throttle
(portal/auth/throttle.py) still hashes every attempt so that it reveals nothing. This limit
comes first: a `before_request` hook on both sites counts the form posts (not the GETs) to the
views marked with the decorators below, per client address across every tenant and the console, and answers
429 with `Retry-After` before the view runs, so a refused attempt costs one Redis round trip
and no hashing. It answers the same whatever the account, and never looks one up. An allowed
post to an endpoint that hashes then takes its hashing slot (portal/passwords.py) at once, for
the rest of the request: when none is free the answer is a quick 503, before any database or
throttle work, so a burst costs the other workers little.

- Addresses: IPv4 per address, IPv6 per /64 (one subscriber's prefix; an attacker holding one
  gets no more tries by rotating addresses inside it); IPv4-mapped IPv6 counts as IPv4.
- Window: a sliding window of `sign_in_rate_window` seconds, approximated by two fixed
  windows (the previous one weighted by how much of it still overlaps), in one Lua script, so
  concurrent requests cannot both take the last place. Only allowed requests are counted: a
  client that keeps hammering still gets `limit` attempts per window, and people behind the
  same address are not locked out for longer than the window.
- Each process remembers the addresses it refused until their Retry-After: a flooding client
  is then answered without a Redis round trip. This is exact, not a shortcut: only allowed
  requests are counted, so nothing can make room for that address sooner.
- Redis down: the hook raises, and the app answers a designed 503 (fail closed), since without
  Redis neither this limit nor the account throttle can be kept.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from dataclasses import dataclass

from flask import Flask, current_app, request
from redis import Redis

from portal import passwords
from portal.errors import render_error

# How a view is limited: its form posts hash a password, or are a sign-in step that checks a code
# (limited, but holding no hashing slot). A view says so where it is defined (the decorators
# below), so a new password form cannot be forgotten in a list kept elsewhere.
HASHING = "hashing"
CODE = "code"


def hashes_password(view):
    """Mark a view whose form posts hash a password (or check one): limited per address."""
    view.flood_limit = HASHING
    return view


def checks_code(view):
    """Mark a sign-in step that checks a code, not a password: limited, no hashing slot."""
    view.flood_limit = CODE
    return view


def limit_of(app: Flask, endpoint: str | None) -> str | None:
    """HASHING, CODE or None for `endpoint` of `app` (decorators that wrap a view with
    functools.wraps carry the mark outwards)."""
    view = app.view_functions.get(endpoint) if endpoint else None
    return getattr(view, "flood_limit", None)


KEY_PREFIX = "throttle:flood"  # under throttle:, so the tests' per-test clean-up clears it too
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_SCRIPT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
if previous * tonumber(ARGV[1]) + current + 1 > tonumber(ARGV[2]) then
    return {0, current, previous}
end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {1, current + 1, previous}
"""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int  # seconds until the next attempt may go ahead (0 when allowed)


def address_group(address: str | None) -> str:
    """What one client counts as: an IPv4 address, or an IPv6 /64."""
    try:
        ip = ipaddress.ip_address((address or "").split("%", 1)[0])
    except ValueError:
        return "unknown"
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 6:
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class _Refused:
    """Address groups this process refused, with when they may try again (bounded)."""

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self.until: dict[tuple, float] = {}
        self.lock = threading.Lock()

    def wait(self, key: tuple, now: float) -> float:
        until = self.until.get(key)
        if until is None or until <= now:
            return 0.0
        return until - now

    def remember(self, key: tuple, until: float, now: float) -> None:
        with self.lock:
            if len(self.until) >= self.MAX_ENTRIES:
                self.until = {k: v for k, v in self.until.items() if v > now}
                if len(self.until) >= self.MAX_ENTRIES:
                    self.until.clear()
            self.until[key] = until

    def clear(self) -> None:
        with self.lock:
            self.until.clear()


_refused = _Refused()


def forget_refused() -> None:
    """Forget this process's remembered refusals (tests that change the limit)."""
    _refused.clear()


class RequestLimit:
    """`limit` requests per `window` seconds per address group, sliding."""

    def __init__(self, redis: Redis, *, limit: int, window: int):
        self.redis = redis
        self.limit = limit
        self.window = window

    def hit(self, address: str | None, *, now: float | None = None) -> Verdict:
        """Count one request from `address` if the window has room; else say how long to wait."""
        now = time.time() if now is None else now
        group = address_group(address)
        remembered = (self.redis.connection_pool.connection_kwargs.get("db"), group)
        remembered += (self.limit, self.window)
        wait = _refused.wait(remembered, now)
        if wait:
            return Verdict(False, max(1, math.ceil(wait)))
        slot = int(now // self.window)
        elapsed = now - slot * self.window
        weight = (self.window - elapsed) / self.window
        keys = [f"{KEY_PREFIX}:{group}:{slot}", f"{KEY_PREFIX}:{group}:{slot - 1}"]
        script = self.redis.register_script(_SCRIPT)
        allowed, current, previous = script(
            keys=keys, args=[repr(weight), self.limit, 2 * self.window]
        )
        if allowed:
            return Verdict(True, 0)
        wait = self._wait(int(current), int(previous), elapsed)
        _refused.remember(remembered, now + wait, now)
        return Verdict(False, max(1, math.ceil(wait)))

    def _wait(self, current: int, previous: int, elapsed: float) -> float:
        """Seconds until one more request fits, if no other request is counted meanwhile."""
        window, room = self.window, self.limit - 1
        left = window - elapsed  # of the current fixed window
        if current <= room and previous:
            # Fits in this window, once enough of the previous one has slid out.
            wait = left - (room - current) * window / previous
        else:
            # Only in the next window, once enough of this one has slid out.
            wait = left + max(0.0, window - room * window / current) if current else left
        return max(0.0, min(wait, 2.0 * window))


def init_app(app: Flask) -> None:
    """Limit the form posts to the marked views of `app` (the console or the tenant site)."""

    @app.before_request
    def limit_password_endpoints():
        if request.method in _SAFE_METHODS:
            return None
        kind = limit_of(app, request.endpoint)
        if kind is None:
            return None
        from portal.queue import queues
        from portal.web import client_addr

        settings = current_app.config["PORTAL"]
        limit = RequestLimit(
            queues.redis, limit=settings.sign_in_rate_limit, window=settings.sign_in_rate_window
        )
        verdict = limit.hit(client_addr())
        if verdict.allowed:
            if kind == HASHING:
                passwords.hold_slot()  # or HashingBusy: a 503 before any other work
            return None
        body, status = render_error(
            429,
            "Too many attempts",
            "Too many sign-in attempts came from your network. "
            f"Wait {verdict.retry_after} seconds and try again.",
        )
        return body, status, {"Retry-After": str(verdict.retry_after)}

    @app.teardown_request
    def release_hashing_slot(exc):
        passwords.release_slot()
