"""`portal tenants`: create, list, suspend, resume, delete, purge and migrate tenants."""

from __future__ import annotations

import json
import sys

import click
from sqlalchemy import select

from portal.cli.common import cli_actor, command_errors, tenant_or_fail
from portal.db import db
from portal.startup import configure_services


@click.group()
def tenants():
    """Create, list, suspend, resume, delete and migrate tenants."""


@tenants.command("create")
@click.option("--slug", required=True)
@click.option("--name", required=True)
@click.option("--domain", "domains", multiple=True, help="Custom domain (repeatable).")
@click.option("--max-users", type=click.IntRange(0, None))
@click.option("--max-storage-bytes", type=click.IntRange(0, None))
@click.option("--api-requests-per-minute", type=click.IntRange(0, None))
@command_errors
def tenants_create(slug, name, domains, max_users, max_storage_bytes, api_requests_per_minute):
    """Create a tenant and provision its schema."""
    from portal.tenancy.services import create_tenant

    settings = configure_services(need_redis=False)
    with db.platform_scope() as session:
        tenant = create_tenant(
            session,
            slug=slug,
            name=name,
            domains=list(domains),
            max_users=max_users,
            max_storage_bytes=max_storage_bytes,
            api_requests_per_minute=api_requests_per_minute,
            actor=cli_actor(),
            base_domain=settings.base_domain,
        )
        click.echo(f"created tenant {tenant.slug} (schema {tenant.schema})")


def _tenant_json(tenant) -> dict:
    return {
        "slug": tenant.slug,
        "name": tenant.name,
        "status": tenant.status,
        "domains": [d.domain for d in tenant.domains],
        "max_users": tenant.max_users,
        "max_storage_bytes": tenant.max_storage_bytes,
        "api_requests_per_minute": tenant.api_requests_per_minute,
        "schema_revision": tenant.schema_revision,
        "migration_error": tenant.migration_error,
        "created_at": tenant.created_at.isoformat(),
        "purge_after": tenant.purge_after.isoformat() if tenant.purge_after else None,
    }


@tenants.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@command_errors
def tenants_list(as_json):
    """List tenants."""
    from portal.tenancy.models import Tenant

    configure_services(need_redis=False)
    with db.platform_scope() as session:
        rows = [_tenant_json(t) for t in session.scalars(select(Tenant).order_by(Tenant.slug))]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no tenants", err=True)
        return
    click.echo(f"{'SLUG':<24} {'STATUS':<10} {'REVISION':<10} NAME")
    for row in rows:
        click.echo(
            f"{row['slug']:<24} {row['status']:<10} {row['schema_revision'] or '-':<10} {row['name']}"
        )


@tenants.command("suspend")
@click.argument("slug")
@click.option("--reason", default="suspended from the command line", show_default=True)
@command_errors
def tenants_suspend(slug, reason):
    """Suspend a tenant: sign-in and API are refused, data is kept."""
    from portal.tenancy.services import suspend_tenant

    configure_services(need_redis=False)
    with db.platform_scope() as session:
        changed = suspend_tenant(
            session, tenant_or_fail(session, slug), actor=cli_actor(), reason=reason
        )
    click.echo(f"suspended {slug}" if changed else f"{slug} was already suspended")


@tenants.command("resume")
@click.argument("slug")
@command_errors
def tenants_resume(slug):
    """Resume a suspended tenant."""
    from portal.tenancy.services import resume_tenant

    configure_services(need_redis=False)
    with db.platform_scope() as session:
        changed = resume_tenant(session, tenant_or_fail(session, slug), actor=cli_actor())
    click.echo(f"resumed {slug}" if changed else f"{slug} was already active")


@tenants.command("delete")
@click.argument("slug")
@command_errors
def tenants_delete(slug):
    """Soft-delete a tenant; its schema is purged after the grace period."""
    from portal.tenancy.services import delete_tenant

    settings = configure_services(need_redis=False)
    with db.platform_scope() as session:
        tenant = tenant_or_fail(session, slug)
        changed = delete_tenant(
            session, tenant, actor=cli_actor(), grace_days=settings.tenant_purge_grace_days
        )
        purge_after = tenant.purge_after
    if changed:
        click.echo(f"deleted {slug}; data is purged after {purge_after:%Y-%m-%d %H:%M} UTC")
    else:
        click.echo(f"{slug} was already deleted")


@tenants.command("purge")
@click.argument("slug")
@click.option("--force", is_flag=True, help="Purge before the grace period is over.")
@command_errors
def tenants_purge(slug, force):
    """Drop a deleted tenant's schema and role now."""
    from portal.tenancy.services import purge_tenant

    configure_services(need_redis=False)
    with db.platform_scope() as session:
        purge_tenant(session, tenant_or_fail(session, slug), actor=cli_actor(), force=force)
    click.echo(f"purged {slug}")


def migrate_with_progress(*, jobs: int, canary: int) -> None:
    """Run the tenant migrations with a progress bar; exit 1 when a schema failed."""
    from portal.tenancy.migrations import MigrationInProgress, migrate_tenants

    failures: list[str] = []
    with click.progressbar(length=1, label="tenant schemas", file=sys.stderr) as bar:

        def progress(slug, error, total):
            bar.length = max(total, 1)
            if error:
                failures.append(f"failed: {slug}: {error}")
            bar.update(1)

        try:
            report = migrate_tenants(
                actor=cli_actor(), jobs=jobs, canary=canary, on_progress=progress
            )
        except MigrationInProgress as exc:
            raise click.ClickException(str(exc)) from None
    for line in failures:
        click.echo(line, err=True)
    click.echo(
        f"tenants: {report.total} total, {report.up_to_date} already at {report.head}, "
        f"{len(report.migrated)} migrated, {len(report.failed)} failed"
        + (
            f", {len(report.not_attempted)} not attempted (canary failed)"
            if report.not_attempted
            else ""
        ),
        err=True,
    )
    if not report.ok:
        sys.exit(1)


@tenants.command("migrate")
@click.option("--jobs", default=4, show_default=True, type=click.IntRange(1, 32))
@click.option(
    "--canary",
    default=0,
    type=click.IntRange(0, None),
    help="Migrate this many tenants first and stop on any failure.",
)
@command_errors
def tenants_migrate(jobs, canary):
    """Upgrade every tenant schema that is behind head, in parallel."""
    configure_services(need_redis=False)
    migrate_with_progress(jobs=jobs, canary=canary)
