"""The `portal` command: development server, workers, migrations, tenants, their users, staff,
audit, consent.

Every command is a thin caller of the same services the console uses. Bad input prints one
line on stderr and exits with status 2. One module per command group; this one assembles them.
"""

from __future__ import annotations

import sys

import click
from flask.cli import FlaskGroup

from portal.cli.audit import audit
from portal.cli.consent import consent
from portal.cli.db import db_group
from portal.cli.dev import dev
from portal.cli.staff import staff
from portal.cli.tenants import tenants
from portal.cli.users import users
from portal.cli.workers import cron, worker
from portal.config import ConfigError


def _create_app(*args, **kwargs):
    from portal import create_app

    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app, add_version_option=False, load_dotenv=True)
def cli():
    """MSP Portal: a multi-tenant admin portal for managed service providers."""


for command in (dev, worker, cron, db_group, tenants, staff, users, audit, consent):
    cli.add_command(command)


def main() -> None:
    try:
        cli.main(prog_name="portal")
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)


__all__ = ["cli", "main"]
