"""MSP staff accounts, their backup codes, server-side sessions and assigned tenants (platform
schema)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import PlatformBase


class StaffRole(StrEnum):
    PLATFORM_ADMIN = "platform_admin"
    SUPPORT = "support"
    COMPLIANCE = "compliance"


class StaffUser(PlatformBase):
    __tablename__ = "staff_users"
    __table_args__ = (
        CheckConstraint("role IN ('platform_admin', 'support', 'compliance')", name="role"),
        Index("uq_staff_users_email_lower", text("lower(email)"), unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # False: the member sees only the tenants assigned in staff_tenants (an MSP technician's
    # customers). Platform admins always see every tenant.
    all_tenants: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_sign_in_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Two-factor authentication, as tenant users have it (portal/auth/second_factor.py): the
    # TOTP secret sealed with portal.crypto, pending until `mfa_enabled_at` is set.
    mfa_secret: Mapped[str | None] = mapped_column(String(255))
    mfa_enabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    mfa_last_step: Mapped[int | None] = mapped_column(BigInteger)

    @property
    def mfa_enabled(self) -> bool:
        return self.mfa_enabled_at is not None


class StaffBackupCode(PlatformBase):
    """A single-use MFA backup code of a staff member; only its keyed hash is stored."""

    __tablename__ = "staff_backup_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    staff_id: Mapped[int] = mapped_column(
        ForeignKey("staff_users.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StaffSession(PlatformBase):
    """A signed-in browser. The cookie carries a random token; only its SHA-256 is stored."""

    __tablename__ = "staff_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    staff_id: Mapped[int] = mapped_column(
        ForeignKey("staff_users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    client_addr: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    # How the sign-in was completed: "password", "totp" or "backup_code". A hand-off into a
    # tenant whose MFA policy applies needs a session that used a second factor.
    method: Mapped[str] = mapped_column(String(16), default="password", server_default="password")

    staff: Mapped[StaffUser] = relationship(lazy="joined")


class StaffTenant(PlatformBase):
    """A tenant assigned to a staff member whose access is limited to assigned tenants."""

    __tablename__ = "staff_tenants"

    staff_id: Mapped[int] = mapped_column(
        ForeignKey("staff_users.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True, index=True
    )
