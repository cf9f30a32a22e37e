"""Tenant accounts (tenant schema): users, roles, sessions, devices, MFA, one-time tokens and
the tenant's security settings."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import TenantBase


class UserStatus(StrEnum):
    INVITED = "invited"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DELETED = "deleted"


# The users list's search (portal/accounts/listing.py, `search_condition`): the lexemes of a
# user are the pieces of the lower-cased email and name, each cut after one of - . _ @ + '
# (which it keeps) and at white space and ( ) , ; : " (which go): "anna.schmidt@x.example",
# "Anna Schmidt" -> anna. schmidt@ x. example anna schmidt. A typed word is cut the same way,
# its pieces must all be lexemes, the last one only as a prefix ("schmidt", "alex@", "x.ex").
# 'simple' needs no dictionary: array_to_tsvector takes the pieces as they are. Migration 0004
# repeats this text (migrations import no application code); both must stay equal.
USER_SEARCH_VECTOR = (
    "array_to_tsvector(array_remove(regexp_split_to_array(lower(email || ' ' || name), "
    "'(?<=[-._@+''])|[\\s(),;:\"]+'), ''))"
)


class User(TenantBase):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("status IN ('invited', 'active', 'suspended', 'deleted')", name="status"),
        Index("uq_users_email_lower", text("lower(email)"), unique=True),
        # Keyset orders of the users list: (sort column, id).
        Index("ix_users_email_order", text("lower(email)"), "id"),
        Index("ix_users_name_order", text("lower(name)"), "id"),
        Index("ix_users_created_order", "created_at", "id"),
        Index("ix_users_last_sign_in_order", "last_sign_in_at", "id"),
        Index("ix_users_status", "status"),
        Index("ix_users_search", "search_vector", postgresql_using="gin"),
        # The expiry job's search: only unconfirmed self-registrations have the column set.
        Index(
            "ix_users_registration_expires_at",
            "registration_expires_at",
            postgresql_where=text("registration_expires_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16), default=UserStatus.ACTIVE)
    status_reason: Mapped[str | None] = mapped_column(String(500))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    password_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_sign_in_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_sign_in_addr: Mapped[str | None] = mapped_column(String(45))
    sign_in_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # TOTP: the secret is sealed with the app's key (portal/crypto.py); the last accepted time
    # step is kept so a code is accepted at most once.
    mfa_secret: Mapped[str | None] = mapped_column(String(255))
    mfa_enabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    mfa_last_step: Mapped[int | None] = mapped_column(BigInteger)
    # Set while a self-registration is unconfirmed: such a user does not count toward the
    # tenant's max users, and is purged once this passes (jobs/accounts.py). Cleared when the
    # link is used and the quota allows; admins' invitations never set it.
    registration_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Derived from email and name by PostgreSQL (so erasure and every rename update it); never
    # loaded with the row, only searched.
    search_vector: Mapped[str | None] = mapped_column(
        TSVECTOR, Computed(USER_SEARCH_VECTOR, persisted=True), deferred=True
    )

    @property
    def display_name(self) -> str:
        return self.name or self.email

    @property
    def mfa_enabled(self) -> bool:
        return self.mfa_enabled_at is not None

    @property
    def registration_pending(self) -> bool:
        return self.registration_expires_at is not None


class Role(TenantBase):
    """A tenant-defined role. Built-in roles are defined in code (portal/permissions.py) and
    have no row; `user_roles` refers to either kind by key."""

    __tablename__ = "roles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(500), default="")
    permissions: Mapped[list[str]] = mapped_column(ARRAY(String(64)), default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class UserRole(TenantBase):
    __tablename__ = "user_roles"
    __table_args__ = (Index("ix_user_roles_role_key", "role_key", "user_id"),)

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    role_key: Mapped[str] = mapped_column(String(64), primary_key=True)


class Device(TenantBase):
    """A browser a user has signed in from, recognised by a long-lived device cookie."""

    __tablename__ = "devices"
    __table_args__ = (Index("uq_devices_user_token", "user_id", "token_hash", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200), default="")
    user_agent: Mapped[str | None] = mapped_column(String(500))
    first_seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    last_seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    last_addr: Mapped[str | None] = mapped_column(String(45))


class UserSession(TenantBase):
    """A signed-in browser of a tenant user. The cookie carries a token; only its hash is kept."""

    __tablename__ = "user_sessions"
    # The Sessions page's keyset order (newest activity first): a backward range scan.
    __table_args__ = (Index("ix_user_sessions_last_seen_order", "last_seen_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    client_addr: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    # How the session was authenticated: "password", "totp", "backup_code", "invitation".
    method: Mapped[str] = mapped_column(String(16), default="password", server_default="password")

    user: Mapped[User] = relationship(lazy="joined")
    device: Mapped[Device | None] = relationship(lazy="joined")


class BackupCode(TenantBase):
    """A single-use MFA backup code; only its SHA-256 is stored."""

    __tablename__ = "backup_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TokenPurpose(StrEnum):
    INVITATION = "invitation"
    PASSWORD_RESET = "password_reset"


class UserToken(TenantBase):
    """A one-time link token (invitation, password reset): random, stored as SHA-256, expiring,
    single use."""

    __tablename__ = "user_tokens"
    __table_args__ = (
        CheckConstraint("purpose IN ('invitation', 'password_reset')", name="purpose"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class MfaPolicy(StrEnum):
    OFF = "off"
    ADMINS = "admins"
    EVERYONE = "everyone"


class SecuritySettings(TenantBase):
    """The tenant's security settings: one row (id 1); absent means the defaults below."""

    __tablename__ = "security_settings"
    __table_args__ = (
        CheckConstraint("id = 1", name="single_row"),
        CheckConstraint("mfa_policy IN ('off', 'admins', 'everyone')", name="mfa_policy"),
        CheckConstraint("password_min_length BETWEEN 8 AND 64", name="password_min_length"),
        CheckConstraint("idle_timeout_minutes BETWEEN 5 AND 1440", name="idle_timeout"),
        CheckConstraint("absolute_timeout_minutes BETWEEN 15 AND 43200", name="absolute_timeout"),
        CheckConstraint("mfa_grace_days BETWEEN 0 AND 90", name="mfa_grace_days"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1, autoincrement=False)
    mfa_policy: Mapped[str] = mapped_column(String(16), default=MfaPolicy.OFF)
    mfa_grace_days: Mapped[int] = mapped_column(Integer, default=7)
    # When the current policy started to bind: set when the policy is tightened; sign-ins after
    # it (plus the grace period) must enrol before doing anything else.
    mfa_policy_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    idle_timeout_minutes: Mapped[int] = mapped_column(Integer, default=30)
    absolute_timeout_minutes: Mapped[int] = mapped_column(Integer, default=12 * 60)
    self_registration: Mapped[bool] = mapped_column(Boolean, default=False)
    password_min_length: Mapped[int] = mapped_column(Integer, default=12)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
