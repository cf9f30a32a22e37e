"""What the console and /metrics show about background work: queues, workers, failures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rq import Queue, Worker
from rq.cron import CronScheduler
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry

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


def retry_failed_job(queue_name: str, job_id: str) -> bool:
    """Put a failed job back on its queue; False if it is no longer in the failed registry."""
    if queue_name not in QUEUES:
        return False
    registry = FailedJobRegistry(queue=Queue(queue_name, connection=queues.redis))
    if job_id not in registry.get_job_ids():
        return False
    registry.requeue(job_id)
    return True
