"""What every command shares: the exit-status-2 error, the system actor, error translation."""

from __future__ import annotations

import getpass
from functools import wraps

import click
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from portal.config import ConfigError
from portal.validation import InputError


class CLIError(click.ClickException):
    """Bad input: one line on stderr, exit status 2."""

    exit_code = 2


def cli_actor():
    from portal.compliance.audit import Actor

    return Actor(type="system", id=None, label=f"cli:{getpass.getuser()}")


def command_errors(func):
    """Turn input errors into exit status 2 and unreachable servers into one line, no traceback."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (InputError, ConfigError, ValueError) as exc:
            raise CLIError(str(exc)) from None
        except OperationalError as exc:
            message = str(exc.orig or exc).splitlines()[0]
            raise click.ClickException(f"database unavailable: {message}") from None

    return wrapper


def tenant_or_fail(session, slug):
    """The tenant with this slug, locked for the command's transaction; exit 2 when missing."""
    from portal.tenancy.models import Tenant

    tenant = session.scalars(select(Tenant).where(Tenant.slug == slug).with_for_update()).first()
    if tenant is None:
        raise CLIError(f"no tenant with slug {slug!r}")
    return tenant
