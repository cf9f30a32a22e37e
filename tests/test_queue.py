"""Jobs are enqueued only after the transaction commits, and run on a real RQ worker."""

from rq import SimpleWorker

from portal.db import db
from portal.queue import queues


def test_enqueue_after_commit_runs_only_when_the_transaction_commits(app):
    queue = queues.get("default")
    queue.empty()
    try:
        with db.platform_scope() as session:
            queues.enqueue_after_commit(
                session, "default", "builtins.len", [1, 2, 3], request_id="req-abcdef12"
            )
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    assert queue.count == 0
    with db.platform_scope() as session:
        queues.enqueue_after_commit(
            session, "default", "builtins.len", [1, 2, 3], request_id="req-abcdef12"
        )
        assert queue.count == 0  # not before commit
    assert queue.count == 1
    job = queue.jobs[0]
    assert job.meta == {"request_id": "req-abcdef12"}
    SimpleWorker([queue], connection=queues.redis).work(burst=True)
    job.refresh()
    assert job.return_value() == 3
