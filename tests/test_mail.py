"""Outgoing mail: the outbox, delivery by a real RQ worker to a real SMTP server, atomicity."""

import dataclasses
import uuid

import pytest
from rq import SimpleWorker
from rq.registry import ScheduledJobRegistry
from sqlalchemy import delete, select

from portal import mail
from portal.db import db
from portal.mail import Mail, send_mail, store_and_dispatch
from portal.mail_models import OutboxMessage
from portal.queue import queues


def unique_address() -> str:
    return f"mail-{uuid.uuid4().hex[:10]}@customer.example"


@pytest.fixture
def configure_mail(app):
    """Point portal.mail at other settings for one test; the original ones come back after."""
    original = mail.settings()
    queue = queues.get("default")
    queue.empty()

    def configure(**changes):
        mail.configure(dataclasses.replace(app.config["PORTAL"], **changes))

    yield configure
    mail.configure(original)
    queue.empty()
    scheduled = ScheduledJobRegistry(queue=queue)
    for job_id in scheduled.get_job_ids():
        scheduled.remove(job_id, delete_job=True)


@pytest.fixture
def addresses():
    """Recipients used by the test; their outbox rows are deleted afterwards."""
    used: list[str] = []

    def new() -> str:
        used.append(unique_address())
        return used[-1]

    yield new
    with db.platform_scope() as session:
        session.execute(delete(OutboxMessage).where(OutboxMessage.to_addr.in_(used)))


def outbox_row(message_id: int) -> OutboxMessage:
    with db.platform_scope() as session:
        return session.get(OutboxMessage, message_id)


def run_worker() -> None:
    SimpleWorker([queues.get("default")], connection=queues.redis).work(burst=True)


def test_worker_delivers_queued_mail_over_smtp(configure_mail, addresses, smtp_server):
    configure_mail(smtp_host=smtp_server.host, smtp_port=smtp_server.port)
    to = addresses()
    body = "Hello,\n\nOpen https://acme.localhost/invite/abc to join.\n"
    message_id = store_and_dispatch(
        Mail(to=to, subject="You are invited to Acme", body=body, kind="invite", tenant_slug="acme")
    )
    assert outbox_row(message_id).status == "queued"
    assert queues.get("default").count == 1

    run_worker()

    [received] = smtp_server.messages
    assert received["To"] == to
    assert received["Subject"] == "You are invited to Acme"
    assert "portal@localhost" in received["From"]
    assert received.get_content().replace("\r\n", "\n") == body
    assert smtp_server.envelopes[0].rcpt_tos == [to]
    row = outbox_row(message_id)
    assert (row.status, row.error, row.attempts) == ("sent", None, 1)
    assert row.sent_at is not None


def test_delivery_to_a_stopped_server_marks_the_message_failed(
    configure_mail, addresses, smtp_server
):
    configure_mail(smtp_host=smtp_server.host, smtp_port=smtp_server.port)
    smtp_server.stop()
    message_id = store_and_dispatch(Mail(to=addresses(), subject="Reset", body="link"))

    run_worker()

    row = outbox_row(message_id)
    assert row.status == "failed" and row.attempts == 1
    assert "ConnectionRefusedError" in row.error or "refused" in row.error.lower()
    # RQ keeps the job for a later automatic retry.
    assert ScheduledJobRegistry(queue=queues.get("default")).count == 1


def test_delivering_twice_sends_once(configure_mail, addresses, smtp_server):
    configure_mail(smtp_host=smtp_server.host, smtp_port=smtp_server.port)
    message_id = store_and_dispatch(Mail(to=addresses(), subject="Once", body="only once"))
    assert mail.deliver(message_id) is True
    assert mail.deliver(message_id) is True
    assert len(smtp_server.messages) == 1
    assert outbox_row(message_id).attempts == 1


def test_a_header_smtp_cannot_carry_fails_the_message_not_the_job(
    configure_mail, addresses, smtp_server
):
    configure_mail(smtp_host=smtp_server.host, smtp_port=smtp_server.port)
    message_id = store_and_dispatch(Mail(to=addresses(), subject="Bad\r\nBcc: x@y.z", body="b"))
    assert mail.deliver(message_id) is False
    row = outbox_row(message_id)
    assert row.status == "failed" and row.error
    assert smtp_server.messages == []


def test_without_smtp_mail_is_stored_and_no_job_is_enqueued(configure_mail, addresses):
    configure_mail(smtp_host=None)
    message_id = store_and_dispatch(Mail(to=addresses(), subject="Kept", body="kept here"))
    row = outbox_row(message_id)
    assert (row.status, row.attempts, row.body) == ("stored", 0, "kept here")
    assert queues.get("default").count == 0


def test_send_mail_in_a_rolled_back_transaction_stores_nothing(configure_mail, addresses):
    configure_mail(smtp_host=None)
    to = addresses()
    with pytest.raises(RuntimeError):
        with db.platform_scope() as session:
            send_mail(session, Mail(to=to, subject="Never", body="rolled back"))
            raise RuntimeError("the change fails after the mail was asked for")
    with db.platform_scope() as session:
        assert not session.scalars(select(OutboxMessage).where(OutboxMessage.to_addr == to)).all()

    with db.platform_scope() as session:
        send_mail(session, Mail(to=to, subject="Committed", body="kept"))
        assert not session.scalars(
            select(OutboxMessage.id).where(OutboxMessage.to_addr == to)
        ).all()  # nothing before the commit
    with db.platform_scope() as session:
        stored = session.scalars(select(OutboxMessage).where(OutboxMessage.to_addr == to)).all()
        assert [m.subject for m in stored] == ["Committed"]
