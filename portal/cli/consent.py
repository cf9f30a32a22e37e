"""`portal consent`: record a user's grant or withdrawal of a consent purpose (source "admin"),
for consent given on paper, by mail or on the phone."""

from __future__ import annotations

import click

from portal.cli.common import CLIError, cli_actor, command_errors, tenant_or_fail
from portal.db import db
from portal.startup import configure_services


@click.group()
def consent():
    """A tenant's consent ledger: grant or withdraw a purpose for a user."""


def _record(slug: str, email: str, purpose: str, *, granting: bool) -> None:
    from portal.accounts.lifecycle import find_user
    from portal.compliance import consent as ledger
    from portal.compliance.consent_models import ConsentSource
    from portal.tenancy.models import TenantStatus

    configure_services(need_redis=False)
    with db.platform_scope() as session:
        tenant = tenant_or_fail(session, slug)
        if tenant.status == TenantStatus.DELETED:
            raise CLIError(f"tenant {slug} is {tenant.status}")
    change = ledger.grant_consent if granting else ledger.withdraw_consent
    with db.tenant_scope(tenant) as session:
        user = find_user(session, email, lock=True)
        if user is None:
            raise CLIError(f"no user with email {email.strip()!r} in tenant {slug}")
        changed = change(session, user, purpose, actor=cli_actor(), source=ConsentSource.ADMIN)
        address = user.email
    verb = "granted" if granting else "withdrawn"
    if changed:
        click.echo(f"{purpose} {verb} for {address}")
    else:
        click.echo(f"{purpose} was already {verb} for {address}")


@consent.command("grant")
@click.option("--tenant", "slug", required=True, help="The tenant's slug.")
@click.option("--email", required=True)
@click.option("--purpose", required=True, help="The purpose's key, as on the Consent page.")
@command_errors
def consent_grant(slug, email, purpose):
    """Record that the user agrees to the purpose's current text."""
    _record(slug, email, purpose, granting=True)


@consent.command("withdraw")
@click.option("--tenant", "slug", required=True, help="The tenant's slug.")
@click.option("--email", required=True)
@click.option("--purpose", required=True, help="The purpose's key, as on the Consent page.")
@command_errors
def consent_withdraw(slug, email, purpose):
    """Record that the user withdraws (or declines) the purpose."""
    _record(slug, email, purpose, granting=False)
