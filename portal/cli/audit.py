"""`portal audit`: the audit trail."""

from __future__ import annotations

import sys

import click

from portal.cli.common import command_errors, tenant_or_fail
from portal.db import db
from portal.startup import configure_services


@click.group()
def audit():
    """The audit trail."""


@audit.command("verify")
@click.option("--tenant", "slug", help="Verify this tenant's trail instead of the platform's.")
@command_errors
def audit_verify(slug):
    """Check the hash chain; print `ok: N entries` or the first broken entry (exit 1)."""
    from portal.compliance.audit import verify_chain

    configure_services(need_redis=False)
    if slug:
        with db.platform_scope() as session:
            tenant_or_fail(session, slug)
        with db.tenant_scope(slug) as session:
            result = verify_chain(session)
        trail = f"tenant {slug}"
    else:
        with db.platform_scope() as session:
            result = verify_chain(session)
        trail = "platform"
    click.echo(result.message(trail))
    if not result.ok:
        sys.exit(1)
