"""Redis connection and RQ queues; jobs are enqueued only after the transaction commits.

A request never waits long on Redis: connecting and each reply time out after about a second,
and only a refused or dropped connection is retried (once, at once; a stale pooled connection
after a Redis restart), never a timeout, so a hung Redis costs a request ~1 s, not redis-py's
default of four tries with backoff. The caller then fails (sign-in answers a designed 503, see
portal/errors.py). RQ workers raise the read timeout of their own connection for blocking pops.
"""

from __future__ import annotations

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry
from rq import Queue
from sqlalchemy.orm import Session

from portal.db import on_commit

QUEUES = ("default", "exports", "retention", "webhooks")
SOCKET_TIMEOUT_SECONDS = 1.0
CONNECT_TIMEOUT_SECONDS = 1.0


def connect(url: str) -> Redis:
    """A client for `url` with the short timeouts and single retry described above."""
    return Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        retry_on_timeout=False,
    )


class Queues:
    def __init__(self) -> None:
        self.url: str | None = None
        self._redis: Redis | None = None

    def configure(self, url: str) -> None:
        if url != self.url:
            self.url = url
            self._redis = connect(url)

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise RuntimeError("Redis not configured")
        return self._redis

    def close(self) -> None:
        """Close this process's connections (before the embedded server is stopped)."""
        if self._redis is not None:
            self._redis.connection_pool.disconnect()

    def get(self, name: str = "default") -> Queue:
        if name not in QUEUES:
            raise ValueError(f"unknown queue {name!r}")
        return Queue(name, connection=self.redis)

    def enqueue_after_commit(
        self, session: Session, queue: str, func, *args, request_id: str | None = None, **kwargs
    ) -> None:
        """Enqueue once the transaction commits; the job's logs carry `request_id`."""
        meta = {"request_id": request_id} if request_id else None
        on_commit(session, lambda: self.get(queue).enqueue(func, *args, meta=meta, **kwargs))


queues = Queues()
