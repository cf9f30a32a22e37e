"""Settings read from the environment (and an optional .env file)."""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import load_dotenv

DEFAULT_SECRET_KEY = "dev-insecure-secret-key-change-me"
ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """The environment describes a configuration the portal refuses to run with."""


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    secret_key: str = DEFAULT_SECRET_KEY
    database_url: str | None = None
    # DDL (migrations, provisioning, purge) connects as this owner role; requests and jobs as
    # the runtime role of `database_url`, which owns nothing (issue 11 §6).
    database_owner_url: str | None = None
    redis_url: str | None = None
    base_domain: str = "localhost"
    instance_path: Path = ROOT / "instance"
    port: int = 5000
    storage_path: Path = ROOT / "instance" / "storage"
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_region: str | None = None
    # Without these two, boto3 looks for credentials itself (AWS_* variables, an instance role).
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = field(default=None, repr=False)
    # Stored objects are encrypted under this master key (32 bytes); the earlier keys still open
    # the objects they wrapped, so a key can rotate (portal/storage). Without one, development
    # generates instance/storage-master-key; production refuses to start.
    storage_master_key: bytes | None = field(default=None, repr=False)
    storage_old_master_keys: tuple[bytes, ...] = field(default=(), repr=False)
    log_level: str = "INFO"
    tenant_purge_grace_days: int = 30
    proxy_count: int = 0
    # Mail (A9). Without SMTP_HOST, mail stays in the platform outbox (console → Outbox).
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    mail_from: str = "portal@localhost"
    # Scheme of links in mail (invitations, password resets); https in production.
    url_scheme: str = "http"
    # Every MSP staff member must use two-factor authentication; without it enrolled, a
    # signed-in member can only enrol or sign out (issue 11 §2).
    staff_mfa_required: bool = True
    # /metrics: with a token, only requests bearing it; without, loopback and these networks.
    metrics_token: str | None = None
    metrics_allow: tuple[str, ...] = ()
    # Sign-in flood (issue 11 §5): form posts to the password endpoints per client address
    # (IPv6 per /64) per sliding window, answered 429 beyond it before any hashing; the
    # password hashes one process computes at once, a sign-in waiting at most this long for a
    # slot; and those the whole machine computes at once (through Redis, no wait; 0: no
    # machine-wide cap). Past a cap: a 503 (portal/passwords.py, portal/auth/flood.py).
    sign_in_rate_limit: int = 30
    sign_in_rate_window: int = 60
    password_hash_concurrency: int = 2
    password_hash_wait_ms: int = 1000
    password_hash_host_concurrency: int = 1

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def embedded_database(self) -> bool:
        return not self.database_url

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url

    def check(self) -> None:
        """Refuse settings that would be unsafe in production."""
        if self.env not in ("development", "production"):
            raise ConfigError(f"PORTAL_ENV must be 'development' or 'production', not {self.env!r}")
        for name in ("sign_in_rate_limit", "sign_in_rate_window", "password_hash_concurrency"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.upper()} must be at least 1")
        if self.password_hash_wait_ms < 0 or self.password_hash_host_concurrency < 0:
            raise ConfigError(
                "PASSWORD_HASH_WAIT_MS and PASSWORD_HASH_HOST_CONCURRENCY must not be negative"
            )
        if self.database_owner_url and not self.database_url:
            raise ConfigError("DATABASE_OWNER_URL needs DATABASE_URL (the runtime role) beside it")
        if bool(self.s3_access_key_id) != bool(self.s3_secret_access_key):
            raise ConfigError(
                "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY are set together or not at all"
            )
        if self.production:
            if self.secret_key == DEFAULT_SECRET_KEY or len(self.secret_key) < 32:
                raise ConfigError(
                    "PORTAL_ENV=production needs SECRET_KEY set to a random value of 32+ characters"
                )
            if self.database_url and (
                not self.database_owner_url or self.database_owner_url == self.database_url
            ):
                # Serving requests as the owner of the tables would let any SQL injection
                # disable the audit trigger or leave a tenant's role (issue 11 §6).
                raise ConfigError(
                    "PORTAL_ENV=production needs DATABASE_OWNER_URL (migrations and provisioning) "
                    "beside a DATABASE_URL for a runtime role that owns nothing"
                )
            if not self.storage_master_key:
                raise ConfigError(
                    "PORTAL_ENV=production needs STORAGE_MASTER_KEY (32 random bytes in base64) "
                    "to encrypt stored objects"
                )


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, not {raw!r}") from None


def _bool(name: str, default: bool) -> bool:
    raw = (os.environ.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def _networks(name: str) -> tuple[str, ...]:
    """Comma-separated addresses or CIDR networks ("10.0.0.0/8, 192.0.2.7"), checked here."""
    import ipaddress

    values = []
    for part in (os.environ.get(name) or "").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            values.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ConfigError(f"{name}: {part!r} is not an address or network") from None
    return tuple(values)


def _master_keys(name: str) -> tuple[bytes, ...]:
    """Comma-separated base64 keys of 32 bytes each (`openssl rand -base64 32`), checked here."""
    keys = []
    for part in (os.environ.get(name) or "").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            key = base64.b64decode(part.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise ConfigError(f"{name} must be 32 random bytes in base64 (openssl rand -base64 32)")
        keys.append(key)
    return tuple(keys)


def _master_key(name: str) -> bytes | None:
    keys = _master_keys(name)
    if len(keys) > 1:
        raise ConfigError(f"{name} holds one key; earlier keys go in STORAGE_OLD_MASTER_KEYS")
    return keys[0] if keys else None


def load_settings(**overrides) -> Settings:
    """Read settings from the environment; `.env` in the working directory is read first."""
    load_dotenv(os.environ.get("PORTAL_DOTENV", ".env"), override=False)
    instance = Path(os.environ.get("PORTAL_INSTANCE_PATH") or ROOT / "instance").resolve()
    values = dict(
        env=os.environ.get("PORTAL_ENV", "development"),
        secret_key=os.environ.get("SECRET_KEY") or DEFAULT_SECRET_KEY,
        database_url=os.environ.get("DATABASE_URL") or None,
        database_owner_url=os.environ.get("DATABASE_OWNER_URL") or None,
        redis_url=os.environ.get("REDIS_URL") or None,
        base_domain=(os.environ.get("PORTAL_BASE_DOMAIN") or "localhost").lower().strip("."),
        instance_path=instance,
        port=_int("PORT", 5000),
        storage_path=Path(os.environ.get("STORAGE_PATH") or instance / "storage"),
        s3_endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None,
        s3_bucket=os.environ.get("S3_BUCKET") or None,
        s3_region=os.environ.get("S3_REGION") or None,
        s3_access_key_id=os.environ.get("S3_ACCESS_KEY_ID") or None,
        s3_secret_access_key=os.environ.get("S3_SECRET_ACCESS_KEY") or None,
        storage_master_key=_master_key("STORAGE_MASTER_KEY"),
        storage_old_master_keys=_master_keys("STORAGE_OLD_MASTER_KEYS"),
        log_level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        tenant_purge_grace_days=_int("TENANT_PURGE_GRACE_DAYS", 30),
        proxy_count=_int("PORTAL_PROXY_COUNT", 0),
        smtp_host=os.environ.get("SMTP_HOST") or None,
        smtp_port=_int("SMTP_PORT", 587),
        smtp_username=os.environ.get("SMTP_USERNAME") or None,
        smtp_password=os.environ.get("SMTP_PASSWORD") or None,
        smtp_starttls=_bool("SMTP_STARTTLS", False),
        smtp_ssl=_bool("SMTP_SSL", False),
        mail_from=os.environ.get("MAIL_FROM") or "portal@localhost",
        url_scheme=os.environ.get("PORTAL_URL_SCHEME")
        or ("https" if os.environ.get("PORTAL_ENV") == "production" else "http"),
        staff_mfa_required=_bool("STAFF_MFA_REQUIRED", True),
        metrics_token=os.environ.get("METRICS_TOKEN") or None,
        metrics_allow=_networks("METRICS_ALLOW"),
        sign_in_rate_limit=_int("SIGN_IN_RATE_LIMIT", 30),
        sign_in_rate_window=_int("SIGN_IN_RATE_WINDOW", 60),
        password_hash_concurrency=_int("PASSWORD_HASH_CONCURRENCY", 2),
        password_hash_wait_ms=_int("PASSWORD_HASH_WAIT_MS", 1000),
        password_hash_host_concurrency=_int("PASSWORD_HASH_HOST_CONCURRENCY", 1),
    )
    values.update(overrides)
    settings = Settings(**values)
    settings.check()
    return settings
