"""`portal users`: a tenant's users — create or invite, list, suspend, reactivate."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager

import click
from sqlalchemy import select

from portal.cli.common import CLIError, cli_actor, command_errors
from portal.db import db
from portal.startup import configure_services
from portal.validation import InputError


@click.group()
def users():
    """A tenant's users: create or invite, list, suspend, reactivate."""


def _users_tenant(slug: str, *, creating: bool = False):
    """The tenant (a detached row with its domains) whose users a command changes.

    A deleted tenant is refused; so is creating users in a suspended one (nobody could sign in,
    and an invitation link would lead to the suspension notice)."""
    from portal.tenancy.models import Tenant, TenantStatus

    with db.platform_scope() as session:
        tenant = session.scalars(select(Tenant).where(Tenant.slug == slug)).first()
    if tenant is None:
        raise CLIError(f"no tenant with slug {slug!r}")
    if tenant.status == TenantStatus.DELETED or (
        creating and tenant.status == TenantStatus.SUSPENDED
    ):
        raise CLIError(f"tenant {slug} is {tenant.status}")
    return tenant


def _user_or_fail(session, email: str, slug: str):
    from portal.accounts.lifecycle import find_user

    user = find_user(session, email, lock=True)
    if user is None:
        raise CLIError(f"no user with email {email.strip()!r} in tenant {slug}")
    return user


@contextmanager
def _password_refused():
    """Say that a policy message ("Use at least 12 characters.") is about the password."""
    try:
        yield
    except InputError as exc:
        if exc.field != "password":
            raise
        raise CLIError(f"password refused: {exc}") from None


@users.command("create")
@click.option("--tenant", "slug", required=True, help="The tenant's slug.")
@click.option("--email", required=True)
@click.option("--name", default="")
@click.option(
    "--role",
    "role_keys",
    multiple=True,
    help="Role key (repeatable): tenant_admin, compliance_officer or a tenant-defined role.",
)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--invite", is_flag=True, help="Email an invitation link (user without password).")
@command_errors
def users_create(slug, email, name, role_keys, password_stdin, invite):
    """Create a user: active with a password from stdin, else invited (emailed with --invite)."""
    from portal.accounts.invitations import invite_user
    from portal.accounts.lifecycle import create_user
    from portal.accounts.models import UserStatus
    from portal.tenancy.urls import tenant_base_url

    if password_stdin and invite:
        raise CLIError("--invite is for users without a password: drop --password-stdin")
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    # Only an invitation may need Redis (to queue its delivery when SMTP is configured).
    settings = configure_services(need_redis=invite)
    tenant = _users_tenant(slug, creating=True)
    with db.tenant_scope(tenant) as session, _password_refused():
        if invite:
            user = invite_user(
                session,
                email=email,
                name=name,
                role_keys=role_keys,
                actor=cli_actor(),
                base_url=tenant_base_url(tenant, settings),
            )
        else:
            user = create_user(
                session,
                email=email,
                name=name,
                password=password,
                status=UserStatus.ACTIVE if password_stdin else UserStatus.INVITED,
                role_keys=role_keys,
                actor=cli_actor(),
            )
        created = f"created user {user.id} {user.email} ({user.status})"
    click.echo(created)
    if invite:
        from portal import mail

        where = "" if mail.smtp_configured() else " (no SMTP_HOST: kept in the console's Outbox)"
        click.echo(f"invitation sent to {user.email}{where}", err=True)
    elif not password_stdin:
        click.echo("no invitation sent: pass --invite, or resend it from the Users page", err=True)


def _users_query(status: str | None):
    """Users in id order, each with its role keys aggregated in the same query (no N+1)."""
    from sqlalchemy import func
    from sqlalchemy.dialects.postgresql import aggregate_order_by

    from portal.accounts.models import User, UserRole

    role_keys = (
        select(
            UserRole.user_id,
            func.array_agg(aggregate_order_by(UserRole.role_key, UserRole.role_key)).label(
                "role_keys"
            ),
        )
        .group_by(UserRole.user_id)
        .subquery()
    )
    query = (
        select(User, role_keys.c.role_keys)
        .outerjoin(role_keys, role_keys.c.user_id == User.id)
        .order_by(User.id)
    )
    if status:
        query = query.where(User.status == status)
    return query.execution_options(yield_per=500)


def _iso(value) -> str | None:
    return value.isoformat() if value else None


@users.command("list")
@click.option("--tenant", "slug", required=True, help="The tenant's slug.")
@click.option(
    "--status", type=click.Choice(["invited", "active", "suspended", "deleted"]), default=None
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@command_errors
def users_list(slug, status, as_json):
    """List a tenant's users in id order (all statuses unless --status)."""
    from portal.accounts.roles import role_names
    from portal.permissions import BuiltinRole

    configure_services(need_redis=False)
    tenant = _users_tenant(slug)
    count = 0
    with db.tenant_scope(tenant) as session:
        names = role_names(session)
        for user, keys in session.execute(_users_query(status)):
            keys = list(keys or ()) or [BuiltinRole.MEMBER.value]
            if as_json:
                row = {
                    "id": user.id,
                    "email": user.email,
                    "name": user.name,
                    "status": user.status,
                    "roles": keys,
                    "mfa": user.mfa_enabled,
                    "last_sign_in_at": _iso(user.last_sign_in_at),
                    "created_at": _iso(user.created_at),
                }
                click.echo(("[\n  " if count == 0 else ",\n  ") + json.dumps(row), nl=False)
            else:
                if count == 0:
                    click.echo(
                        f"{'EMAIL':<36} {'NAME':<24} {'STATUS':<10} {'ROLES':<28} {'MFA':<4} "
                        "LAST SIGN-IN (UTC)"
                    )
                signed_in = (
                    f"{user.last_sign_in_at:%Y-%m-%d %H:%M}" if user.last_sign_in_at else "never"
                )
                roles_shown = ", ".join(names.get(k, k) for k in keys)
                click.echo(
                    f"{user.email:<36} {user.name or '-':<24} {user.status:<10} "
                    f"{roles_shown:<28} {'on' if user.mfa_enabled else 'off':<4} {signed_in}"
                )
            count += 1
    if as_json:
        click.echo("\n]" if count else "[]")
    elif not count:
        click.echo("no users", err=True)


@users.command("suspend")
@click.option("--tenant", "slug", required=True, help="The tenant's slug.")
@click.option("--email", required=True)
@click.option("--reason", default="suspended from the command line", show_default=True)
@command_errors
def users_suspend(slug, email, reason):
    """Suspend a user: sign-in refused, every session ended at once, data kept."""
    from portal.accounts.lifecycle import suspend_user

    configure_services(need_redis=False)
    tenant = _users_tenant(slug)
    with db.tenant_scope(tenant) as session:
        user = _user_or_fail(session, email, slug)
        changed = suspend_user(session, user, actor=cli_actor(), reason=reason)
        address = user.email
    click.echo(f"suspended {address}" if changed else f"{address} is already suspended")


@users.command("reactivate")
@click.option("--tenant", "slug", required=True, help="The tenant's slug.")
@click.option("--email", required=True)
@command_errors
def users_reactivate(slug, email):
    """Reactivate a suspended user (invited again if they never set a password)."""
    from portal.accounts.lifecycle import reactivate_user

    configure_services(need_redis=False)
    tenant = _users_tenant(slug)
    with db.tenant_scope(tenant) as session:
        user = _user_or_fail(session, email, slug)
        changed = reactivate_user(session, user, actor=cli_actor())
        address, status = user.email, user.status
    if changed:
        click.echo(f"reactivated {address} ({status})")
    else:
        click.echo(f"{address} is not suspended ({status})")
