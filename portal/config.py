"""Settings read from the environment (and an optional .env file)."""

from __future__ import annotations

import os
from dataclasses import dataclass
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
    redis_url: str | None = None
    base_domain: str = "localhost"
    instance_path: Path = ROOT / "instance"
    port: int = 5000
    storage_path: Path = ROOT / "instance" / "storage"
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_region: str | None = None
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
        if self.production:
            if self.secret_key == DEFAULT_SECRET_KEY or len(self.secret_key) < 32:
                raise ConfigError(
                    "PORTAL_ENV=production needs SECRET_KEY set to a random value of 32+ characters"
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


def load_settings(**overrides) -> Settings:
    """Read settings from the environment; `.env` in the working directory is read first."""
    load_dotenv(os.environ.get("PORTAL_DOTENV", ".env"), override=False)
    instance = Path(os.environ.get("PORTAL_INSTANCE_PATH") or ROOT / "instance").resolve()
    values = dict(
        env=os.environ.get("PORTAL_ENV", "development"),
        secret_key=os.environ.get("SECRET_KEY") or DEFAULT_SECRET_KEY,
        database_url=os.environ.get("DATABASE_URL") or None,
        redis_url=os.environ.get("REDIS_URL") or None,
        base_domain=(os.environ.get("PORTAL_BASE_DOMAIN") or "localhost").lower().strip("."),
        instance_path=instance,
        port=_int("PORT", 5000),
        storage_path=Path(os.environ.get("STORAGE_PATH") or instance / "storage"),
        s3_endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None,
        s3_bucket=os.environ.get("S3_BUCKET") or None,
        s3_region=os.environ.get("S3_REGION") or None,
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
    )
    values.update(overrides)
    settings = Settings(**values)
    settings.check()
    return settings
