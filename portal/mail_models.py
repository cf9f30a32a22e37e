"""The platform outbox table: every message the portal sends, with its delivery state (A9)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import PlatformBase


class OutboxStatus:
    STORED = "stored"  # no SMTP server configured: kept for staff to read
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"

    ALL = (STORED, QUEUED, SENT, FAILED)


class OutboxMessage(PlatformBase):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_slug: Mapped[str | None] = mapped_column(String(63), index=True)
    to_addr: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(32), default="notice")
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
