"""Sign-in throttling in Redis, per account and per client address (A4).

Failures are counted per (scope, account) and per (scope, client address) over a sliding hour.
From the 5th failure on, the next attempt must wait a delay that doubles with each failure
(1 s, 2 s, 4 s … capped at 5 min); from the 20th the key is locked for 15 minutes, during which
even the right password is refused. A client address gets four times the allowance, since
many people may share one. Success clears the account's count, not the address's.

Accounts are keyed by a hash of the normalised identifier, known or not, so the throttle
behaves the same for accounts that exist and accounts that do not.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from redis import Redis


@dataclass(frozen=True)
class Policy:
    delay_after: int = 5
    lock_after: int = 20
    lock_seconds: int = 15 * 60
    window_seconds: int = 60 * 60
    max_delay_seconds: int = 5 * 60
    address_factor: int = 4


class SignInThrottle:
    def __init__(self, redis: Redis, scope: str, policy: Policy | None = None):
        self.redis = redis
        self.scope = scope
        self.policy = policy or Policy()

    def _keys(self, account: str, address: str | None) -> list[tuple[str, int]]:
        digest = hashlib.sha256(account.strip().lower().encode()).hexdigest()[:32]
        keys = [(f"throttle:{self.scope}:account:{digest}", 1)]
        if address:
            keys.append((f"throttle:{self.scope}:address:{address}", self.policy.address_factor))
        return keys

    def wait_seconds(self, account: str, address: str | None) -> float:
        """How long this attempt must wait (0: it may go ahead)."""
        now = time.time()
        wait = 0.0
        for key, factor in self._keys(account, address):
            locked = self.redis.ttl(f"{key}:lock")
            if locked and locked > 0:
                wait = max(wait, float(locked))
                continue
            failures, last = self.redis.hmget(key, "failures", "last")
            failures = int(failures or 0)
            free = self.policy.delay_after * factor
            if failures >= free and last is not None:
                delay = min(2 ** (failures - free), self.policy.max_delay_seconds)
                wait = max(wait, float(last) + delay - now)
        return max(wait, 0.0)

    def failed(self, account: str, address: str | None) -> None:
        for key, factor in self._keys(account, address):
            with self.redis.pipeline() as pipe:
                pipe.hincrby(key, "failures", 1)
                pipe.hset(key, "last", time.time())
                pipe.expire(key, self.policy.window_seconds)
                failures = pipe.execute()[0]
            if failures >= self.policy.lock_after * factor:
                self.redis.set(f"{key}:lock", 1, ex=self.policy.lock_seconds)

    def succeeded(self, account: str) -> None:
        key, _ = self._keys(account, None)[0]
        self.redis.delete(key, f"{key}:lock")
