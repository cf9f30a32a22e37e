"""Redis connection and RQ queues; jobs are enqueued only after the transaction commits."""

from __future__ import annotations

from redis import Redis
from rq import Queue
from sqlalchemy.orm import Session

from portal.db import on_commit

QUEUES = ("default", "exports", "retention", "webhooks")


class Queues:
    def __init__(self) -> None:
        self.url: str | None = None
        self._redis: Redis | None = None

    def configure(self, url: str) -> None:
        if url != self.url:
            self.url = url
            self._redis = Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)

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
