"""Process start-up (portal/startup.py): the app factory and the migration runner start a
process without the CLI; the database URLs it chooses."""

import json
import logging
import subprocess
import sys
from pathlib import Path

from portal import startup
from portal.config import load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_the_app_factory_and_the_migration_runner_start_without_loading_the_cli(urls):
    # A fresh interpreter: this test process has loaded the CLI already (the run_cli fixture).
    script = """
import json, sys
from portal import create_app
from portal.tenancy import migrations
create_app(json.loads(sys.argv[1]))
with migrations.connection_for_alembic(migrations.alembic_config("platform")) as connection:
    connection.exec_driver_sql("SELECT 1")
print(json.dumps(sorted(m for m in sys.modules if m == "portal.cli" or m.startswith("portal.cli."))))
"""
    env_urls = json.dumps({**urls, "secret_key": "s" * 40})
    result = subprocess.run(
        [sys.executable, "-c", script, env_urls],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": "/usr/bin:/bin",
            "DATABASE_URL": urls["database_url"],
            "DATABASE_OWNER_URL": urls["database_owner_url"],
            "REDIS_URL": urls["redis_url"],
            "PORTAL_DOTENV": "/nonexistent.env",
        },
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == []


def test_database_urls_use_the_owner_url_for_ddl_when_it_is_set():
    settings = load_settings(
        database_url="postgresql://runtime@db/portal",
        database_owner_url="postgresql://owner@db/portal",
    )
    assert startup.database_urls(settings) == (
        "postgresql://runtime@db/portal",
        "postgresql://owner@db/portal",
    )


def test_database_url_alone_serves_as_both_roles_with_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(startup, "_warned_single_role", False)
    settings = load_settings(database_url="postgresql://owner@db/portal", database_owner_url=None)
    with caplog.at_level(logging.WARNING, logger="portal"):
        first = startup.database_urls(settings)
        second = startup.database_urls(settings)
    assert first == second == ("postgresql://owner@db/portal", "postgresql://owner@db/portal")
    warnings = [r for r in caplog.records if "DATABASE_URL alone" in r.getMessage()]
    assert len(warnings) == 1
