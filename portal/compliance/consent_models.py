"""The consent ledger (tenant schema): purposes, the text of each of their versions, and the
append-only records of every grant and withdrawal."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import TenantBase


class LawfulBasis(StrEnum):
    """GDPR Art. 6(1)'s grounds for processing."""

    CONSENT = "consent"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal_obligation"
    VITAL_INTERESTS = "vital_interests"
    PUBLIC_TASK = "public_task"
    LEGITIMATE_INTERESTS = "legitimate_interests"


class ConsentAction(StrEnum):
    GRANTED = "granted"
    WITHDRAWN = "withdrawn"


class ConsentSource(StrEnum):
    WEB = "web"
    API = "api"
    IMPORT = "import"
    ADMIN = "admin"


def _in(column: str, values) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


class ConsentPurpose(TenantBase):
    """What a tenant asks its users to agree to; `version` is that of its current text."""

    __tablename__ = "consent_purposes"
    __table_args__ = (CheckConstraint(_in("lawful_basis", LawfulBasis), name="lawful_basis"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    lawful_basis: Mapped[str] = mapped_column(String(32), default=LawfulBasis.CONSENT)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ConsentPurposeVersion(TenantBase):
    """The words of one version of a purpose, as users were shown them."""

    __tablename__ = "consent_purpose_versions"
    __table_args__ = (
        UniqueConstraint("purpose_key", "version"),
        CheckConstraint(_in("lawful_basis", LawfulBasis), name="lawful_basis"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    purpose_key: Mapped[str] = mapped_column(String(64), ForeignKey("consent_purposes.key"))
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    lawful_basis: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ConsentRecord(TenantBase):
    """One grant or withdrawal, append-only like the audit trail (trigger and grants:
    `portal.compliance.audit.append_only_ddl`): a user's current answer is their latest record for the purpose."""

    __tablename__ = "consent_records"
    __table_args__ = (
        ForeignKeyConstraint(
            ["purpose_key", "version"],
            ["consent_purpose_versions.purpose_key", "consent_purpose_versions.version"],
        ),
        CheckConstraint(_in("action", ConsentAction), name="action"),
        CheckConstraint(_in("source", ConsentSource), name="source"),
        # A user's latest record per purpose, and a purpose's records (counts).
        Index("ix_consent_records_user", "user_id", "purpose_key", "id"),
        Index("ix_consent_records_purpose", "purpose_key", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # No cascade: the trigger refuses deletes; erasure anonymises the user and keeps these.
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id"))
    purpose_key: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    source: Mapped[str] = mapped_column(String(16))
    client_addr: Mapped[str | None] = mapped_column(String(45))
