"""Retrying a failed job: recorded in the platform trail, requeued once the transaction commits."""

from __future__ import annotations

import uuid

import pytest
from rq import SimpleWorker
from rq.registry import FailedJobRegistry
from sqlalchemy import select

from portal import jobs
from portal.compliance.audit import Actor, AuditAction
from portal.compliance.models import PlatformAuditEntry
from portal.db import db
from portal.queue import queues


def failing_job():
    raise RuntimeError("boom from a retry test")


@pytest.fixture
def failed_job(app):
    queue = queues.get("default")
    queue.empty()
    job = queue.enqueue("tests.test_jobs.failing_job")
    SimpleWorker([queue], connection=queues.redis).work(burst=True)
    yield job
    FailedJobRegistry(queue=queue).remove(job, delete_job=True)
    queue.empty()


def retry_entries(request_id):
    with db.platform_scope() as session:
        return session.scalars(
            select(PlatformAuditEntry).where(PlatformAuditEntry.request_id == request_id)
        ).all()


def test_retry_job_records_the_retry_and_requeues_after_commit(failed_job):
    actor = Actor("staff", "7", "ops@msp.example", request_id=uuid.uuid4().hex)
    queue = queues.get("default")
    with db.platform_scope() as session:
        assert jobs.retry_job(session, "default", failed_job.id, actor=actor)
        assert queue.count == 0  # not before the commit
    assert queue.job_ids == [failed_job.id]
    (entry,) = retry_entries(actor.request_id)
    assert (entry.action, entry.target_type, entry.target_id) == (
        AuditAction.JOB_RETRY,
        "job",
        failed_job.id,
    )
    assert entry.detail == {"queue": "default"} and entry.actor_id == "7"


def test_retry_job_rolled_back_requeues_nothing(failed_job):
    actor = Actor("staff", "7", "ops@msp.example", request_id=uuid.uuid4().hex)
    with pytest.raises(RuntimeError), db.platform_scope() as session:
        jobs.retry_job(session, "default", failed_job.id, actor=actor)
        raise RuntimeError("failed after the retry")
    assert queues.get("default").count == 0
    assert retry_entries(actor.request_id) == []


@pytest.mark.parametrize("queue, job_id", [("default", "no-such-job"), ("nope", "x")])
def test_retry_job_of_an_unknown_job_does_nothing(app, queue, job_id):
    actor = Actor("staff", "7", "ops@msp.example", request_id=uuid.uuid4().hex)
    with db.platform_scope() as session:
        assert not jobs.retry_job(session, queue, job_id, actor=actor)
    assert retry_entries(actor.request_id) == []
