"""`portal staff`: MSP staff accounts."""

from __future__ import annotations

import sys

import click

from portal.cli.common import CLIError, cli_actor, command_errors
from portal.db import db
from portal.startup import configure_services


@click.group()
def staff():
    """MSP staff accounts."""


@staff.command("create")
@click.option("--email", required=True)
@click.option("--name", default="")
@click.option(
    "--role", required=True, type=click.Choice(["platform_admin", "support", "compliance"])
)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@command_errors
def staff_create(email, name, role, password_stdin):
    """Create a staff member (password from stdin, or prompted)."""
    from portal.staff.members import create_staff

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    configure_services(need_redis=False)
    with db.platform_scope() as session:
        member = create_staff(
            session, email=email, name=name, role=role, password=password, actor=cli_actor()
        )
        click.echo(f"created staff member {member.email} ({member.role})")


@staff.command("reset-mfa")
@click.option("--email", required=True)
@command_errors
def staff_reset_mfa(email):
    """Remove a staff member's MFA (lost device) and end their sessions; audited. They enrol
    again at their next sign-in."""
    from portal.staff.members import find_staff
    from portal.staff.mfa import reset_staff_mfa

    configure_services()
    with db.platform_scope() as session:
        member = find_staff(session, email, lock=True)
        if member is None:
            raise CLIError(f"no staff member with email {email}")
        changed = reset_staff_mfa(session, member, actor=cli_actor())
    if changed:
        click.echo(
            f"reset two-factor authentication of {member.email}; they enrol again at sign-in"
        )
    else:
        click.echo(f"{member.email} has no two-factor authentication to reset")
