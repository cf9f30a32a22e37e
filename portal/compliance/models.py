"""Audit trail tables: one in the platform schema, one in every tenant schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Index, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from portal.db import PlatformBase, TenantBase


class AuditEntryColumns:
    """Columns shared by both trails.

    Hashed (and therefore immutable for the life of the chain): seq, occurred_at, actor_type,
    actor_id, action, target_type, target_id, request_id, detail, prev_hash. Personal data
    (actor_label, client_addr, personal) is stored beside the chain, unhashed, so that erasing
    a person's data later cannot break verification.
    """

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # Outside the hash: personal data that erasure may blank.
    actor_label: Mapped[str | None] = mapped_column(Text)
    client_addr: Mapped[str | None] = mapped_column(String(45))
    personal: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    @declared_attr.directive
    def __table_args__(cls):
        name = cls.__tablename__
        return (
            Index(f"ix_{name}_occurred_at", "occurred_at"),
            Index(f"ix_{name}_action", "action"),
            Index(f"ix_{name}_actor", "actor_type", "actor_id"),
            Index(f"ix_{name}_target", "target_type", "target_id"),
        )


class PlatformAuditEntry(AuditEntryColumns, PlatformBase):
    __tablename__ = "audit_entries"


class TenantAuditEntry(AuditEntryColumns, TenantBase):
    __tablename__ = "audit_entries"
