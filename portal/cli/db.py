"""`portal db`: migrations and connection details."""

from __future__ import annotations

import click

from portal.cli.common import command_errors
from portal.cli.tenants import migrate_with_progress
from portal.config import load_settings
from portal.startup import configure_services


@click.group("db")
def db_group():
    """Database migrations and connection details."""


@db_group.command("upgrade")
@click.option("--jobs", default=4, show_default=True, type=click.IntRange(1, 32))
@command_errors
def db_upgrade(jobs):
    """Upgrade the platform schema and every tenant schema to head."""
    from portal.tenancy.migrations import upgrade_platform

    configure_services(need_redis=False)
    upgrade_platform()
    click.echo("platform: at head", err=True)
    migrate_with_progress(jobs=jobs, canary=0)


@db_group.command("url")
@click.option(
    "--owner", is_flag=True, help="The owner role's URL (DDL) instead of the runtime role's."
)
def db_url(owner):
    """Print the database URL in use (embedded or not): psql "$(portal db url)"."""
    settings = load_settings()
    if settings.database_url:
        click.echo(
            (settings.database_owner_url or settings.database_url)
            if owner
            else settings.database_url
        )
        return
    from portal import embedded

    # The URL is used after this command exits (psql "$(portal db url)"), so leave the server
    # up; the next `portal dev` joins it and stops it when it ends.
    runtime_url, owner_url = embedded.postgres_urls(settings.instance_path, keep_running=True)
    click.echo(owner_url if owner else runtime_url)
