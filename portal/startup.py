"""Process start-up: point a process (web, worker, CLI command, migration) at its services.

Every entry point calls `configure_services` once before touching the database or Redis; with
no `DATABASE_URL` / `REDIS_URL` it starts (or joins) the embedded servers under the instance
folder. It lives apart from the doors so the app factory and the migration runner need no CLI.
"""

from __future__ import annotations

import logging

from portal.config import Settings, load_settings
from portal.db import db

_warned_single_role = False


def configure_services(settings: Settings | None = None, *, need_redis: bool = True) -> Settings:
    """Point the process at its database, Redis and object storage, starting the embedded
    database and Redis when unset."""
    from portal import crypto, embedded, mail, storage
    from portal.queue import queues

    settings = settings or load_settings()
    mail.configure(settings)
    crypto.configure(settings.secret_key)
    storage.configure(settings)
    db.configure(*database_urls(settings))
    if need_redis:
        queues.configure(settings.redis_url or embedded.redis_url(settings.instance_path))
    return settings


def database_urls(settings: Settings) -> tuple[str, str]:
    """(runtime URL, owner URL). Requests and jobs connect as the runtime role, which owns
    nothing; migrations and provisioning DDL as the owner. The embedded server creates both.
    One DATABASE_URL alone serves as both, with a warning (production refuses it)."""
    global _warned_single_role
    from portal import embedded

    if not settings.database_url:
        return embedded.postgres_urls(settings.instance_path)
    owner = settings.database_owner_url or settings.database_url
    if owner == settings.database_url and not _warned_single_role:
        _warned_single_role = True
        logging.getLogger("portal").warning(
            "DATABASE_URL alone: requests run as the owner of the tables, which can disable "
            "the audit trigger and leave a tenant's role. Set DATABASE_OWNER_URL for "
            "migrations and provisioning, and point DATABASE_URL at a runtime role (see the "
            "README's security notes); production refuses to start without it."
        )
    return settings.database_url, owner
