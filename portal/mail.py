"""Outgoing mail: every message goes through the platform outbox (A9).

`send_mail(session, ...)` is called by services inside their transaction and does nothing until
that transaction commits, so a rolled-back change never sends mail. After commit the message is
written to `platform.outbox` in its own short transaction; then
- with `SMTP_HOST` set, a job on the default queue delivers it over SMTP and marks it sent (or
  failed, with the error, to be retried from the console's Outbox page);
- without it (the embedded default), it stays in the outbox as "stored", readable by staff.
Message bodies may hold one-time links, so the outbox is visible to platform admins only.
Delivery is safe to run twice: it locks the row and skips a message already sent.
The outbox table itself is declared in `portal/mail_models.py`.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

from sqlalchemy.orm import Session

from portal.compliance.audit import Actor, AuditAction, record
from portal.db import db, on_commit
from portal.mail_models import OutboxMessage, OutboxStatus
from portal.validation import InputError

_settings = None


def configure(settings) -> None:
    """Remember the process's settings (SMTP server, sender) for sending."""
    global _settings
    _settings = settings


def settings():
    return _settings


def smtp_configured() -> bool:
    return bool(_settings and _settings.smtp_host)


DELIVERY_JOB = "jobs.mail.deliver_mail"


def _dispatch(message_id: int) -> None:
    """Enqueue the delivery job of a queued message. Runs after a commit, so it must not raise
    when Redis is down: the message is marked failed instead, to be retried from the console."""
    from redis.exceptions import RedisError
    from rq import Retry

    from portal.queue import queues

    try:
        queues.get("default").enqueue(
            DELIVERY_JOB, message_id, retry=Retry(max=3, interval=[10, 60, 300])
        )
    except RedisError as error:
        with db.platform_scope() as session:
            message = session.get(OutboxMessage, message_id, with_for_update=True)
            if message is not None and message.status == OutboxStatus.QUEUED:
                message.status = OutboxStatus.FAILED
                message.error = f"not queued: {type(error).__name__}: {error}"[:2000]


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str
    kind: str = "notice"
    tenant_slug: str | None = None


def send_mail(session: Session, mail: Mail) -> None:
    """Queue `mail` to leave after `session` commits."""
    on_commit(session, lambda: store_and_dispatch(mail))


def store_and_dispatch(mail: Mail) -> int:
    """Write the message to the outbox and, with SMTP configured, enqueue its delivery."""
    status = OutboxStatus.QUEUED if smtp_configured() else OutboxStatus.STORED
    with db.platform_scope() as session:
        message = OutboxMessage(
            tenant_slug=mail.tenant_slug,
            to_addr=mail.to,
            subject=mail.subject,
            body=mail.body,
            kind=mail.kind,
            status=status,
        )
        session.add(message)
        session.flush()
        message_id = message.id
    if status == OutboxStatus.QUEUED:
        _dispatch(message_id)
    return message_id


def retry_delivery(session: Session, message: OutboxMessage, *, actor: Actor) -> bool:
    """Queue a failed message for delivery again (after commit); False unless it had failed.

    The caller locks the row."""
    if message.status != OutboxStatus.FAILED:
        return False
    if not smtp_configured():
        raise InputError("No SMTP server is configured (SMTP_HOST), so mail cannot be sent.")
    message.status = OutboxStatus.QUEUED
    session.flush()
    record(
        session,
        AuditAction.MAIL_RETRY,
        actor=actor,
        target=("outbox", message.id),
        detail={"kind": message.kind, "tenant": message.tenant_slug, "attempts": message.attempts},
        personal={"to": message.to_addr},
    )
    message_id = message.id
    on_commit(session, lambda: _dispatch(message_id))
    return True


def deliver(message_id: int) -> bool:
    """Send one outbox message over SMTP and record the result; True when sent (or already)."""
    with db.platform_scope() as session:
        message = session.get(OutboxMessage, message_id, with_for_update=True)
        if message is None or message.status == OutboxStatus.SENT:
            return True
        message.attempts += 1
        try:
            if not smtp_configured():
                raise smtplib.SMTPException("no SMTP server configured (SMTP_HOST)")
            _smtp_send(_settings, message)
        # ValueError: a header the email package refuses (say, a line break in the subject).
        except (OSError, smtplib.SMTPException, ValueError) as error:
            message.status = OutboxStatus.FAILED
            message.error = f"{type(error).__name__}: {error}"[:2000]
            return False
        message.status = OutboxStatus.SENT
        message.error = None
        message.sent_at = datetime.now(UTC)
        return True


def _smtp_send(settings, message: OutboxMessage) -> None:
    email = EmailMessage()
    email["From"] = formataddr(("MSP Portal", settings.mail_from))
    email["To"] = message.to_addr
    email["Subject"] = message.subject
    email["Message-ID"] = make_msgid(domain=settings.mail_from.rpartition("@")[2] or None)
    email.set_content(message.body)
    context = ssl.create_default_context()
    if settings.smtp_ssl:
        client = smtplib.SMTP_SSL(
            settings.smtp_host, settings.smtp_port, timeout=10, context=context
        )
    else:
        client = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10)
    with client:
        if settings.smtp_starttls and not settings.smtp_ssl:
            client.starttls(context=context)
        if settings.smtp_username:
            client.login(settings.smtp_username, settings.smtp_password or "")
        client.send_message(email)
