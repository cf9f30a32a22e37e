"""Mail delivery job: send one outbox message over SMTP."""

from __future__ import annotations

from portal import mail


class DeliveryFailed(Exception):
    """SMTP refused or was unreachable; RQ retries the job (the error is on the outbox row)."""


def deliver_mail(message_id: int) -> None:
    if not mail.deliver(message_id):
        raise DeliveryFailed(f"outbox message {message_id} not delivered")
