"""Background work: queues, workers and failures for the console and /metrics; job retry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rq import Queue, Worker
from rq.cron import CronScheduler
from rq.exceptions import InvalidJobOperation
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry
from sqlalchemy.orm import Session

from portal.compliance.audit import Actor, AuditAction, record
from portal.db import on_commit
from portal.queue import QUEUES, queues


@dataclass(frozen=True)
class QueueState:
    name: str
    queued: int
    running: int
    failed: int


@dataclass(frozen=True)
class FailedJob:
    id: str
    queue: str
    func: str
    ended_at: datetime | None
    error: str


def queue_states() -> list[QueueState]:
    states = []
    for name in QUEUES:
        queue = Queue(name, connection=queues.redis)
        states.append(
            QueueState(
                name=name,
                queued=queue.count,
                running=StartedJobRegistry(queue=queue).count,
                failed=FailedJobRegistry(queue=queue).count,
            )
        )
    return states


def workers() -> list[Worker]:
    return Worker.all(connection=queues.redis)


def schedulers() -> list[CronScheduler]:
    return CronScheduler.all(connection=queues.redis)


def failed_jobs(limit: int = 50) -> list[FailedJob]:
    found = []
    for name in QUEUES:
        registry = FailedJobRegistry(queue=Queue(name, connection=queues.redis))
        for job_id in registry.get_job_ids(0, limit - 1, desc=True):
            job = (
                Job.fetch(job_id, connection=queues.redis)
                if Job.exists(job_id, queues.redis)
                else None
            )
            if job is None:
                continue
            result = job.latest_result()
            error = ((result.exc_string if result else None) or "").strip().splitlines()
            found.append(
                FailedJob(
                    job.id,
                    name,
                    job.func_name or "?",
                    job.ended_at,
                    error[-1] if error else "unknown error",
                )
            )
    found.sort(key=lambda j: j.ended_at or datetime.min, reverse=True)
    return found[:limit]


def retry_job(session: Session, queue_name: str, job_id: str, *, actor: Actor) -> bool:
    """Put a failed job back on its queue once the transaction commits, recorded in the
    platform trail; False (nothing done) if it is not in that queue's failed registry."""
    if queue_name not in QUEUES:
        return False
    registry = FailedJobRegistry(queue=Queue(queue_name, connection=queues.redis))
    if job_id not in registry.get_job_ids():
        return False
    record(
        session,
        AuditAction.JOB_RETRY,
        actor=actor,
        target=("job", job_id),
        detail={"queue": queue_name},
    )
    on_commit(session, lambda: _requeue(registry, job_id))
    return True


def _requeue(registry: FailedJobRegistry, job_id: str) -> None:
    try:
        registry.requeue(job_id)
    except InvalidJobOperation:
        pass  # requeued meanwhile by a retry made at the same time
