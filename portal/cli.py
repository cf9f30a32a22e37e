"""The `portal` command: development server, workers, migrations, tenants, their users, staff,
audit.

Every command is a thin caller of the same services the console uses. Bad input prints one
line on stderr and exits with status 2.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from functools import wraps

import click
from flask.cli import FlaskGroup
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from portal.config import ConfigError, Settings, load_settings
from portal.db import db
from portal.validation import InputError


class CLIError(click.ClickException):
    """Bad input: one line on stderr, exit status 2."""

    exit_code = 2


def configure_services(settings: Settings | None = None, *, need_redis: bool = True) -> Settings:
    """Point the process at its database and Redis, starting the embedded ones when unset."""
    from portal import crypto, embedded, mail
    from portal.queue import queues

    settings = settings or load_settings()
    mail.configure(settings)
    crypto.configure(settings.secret_key)
    db.configure(*database_urls(settings))
    if need_redis:
        queues.configure(settings.redis_url or embedded.redis_url(settings.instance_path))
    return settings


_warned_single_role = False


def database_urls(settings: Settings) -> tuple[str, str]:
    """(runtime URL, owner URL). Requests and jobs connect as the runtime role, which owns
    nothing; migrations and provisioning DDL as the owner. The embedded server creates both.
    One DATABASE_URL alone serves as both, with a warning (production refuses it)."""
    global _warned_single_role
    from portal import embedded

    if not settings.database_url:
        return embedded.postgres_urls(settings.instance_path)
    owner = settings.database_owner_url or settings.database_url
    if owner == settings.database_url and not _warned_single_role:
        _warned_single_role = True
        import logging

        logging.getLogger("portal").warning(
            "DATABASE_URL alone: requests run as the owner of the tables, which can disable "
            "the audit trigger and leave a tenant's role. Set DATABASE_OWNER_URL for "
            "migrations and provisioning, and point DATABASE_URL at a runtime role (see the "
            "README's security notes); production refuses to start without it."
        )
    return settings.database_url, owner


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


def _create_app(*args, **kwargs):
    from portal import create_app

    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app, add_version_option=False, load_dotenv=True)
def cli():
    """MSP Portal: a multi-tenant admin portal for managed service providers."""


def main() -> None:
    try:
        cli.main(prog_name="portal")
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)


# ---- development and workers --------------------------------------------------------------


@cli.command(with_appcontext=False)
@click.option(
    "--port", type=click.IntRange(1, 65535), help="Port for the web app (default: $PORT or 5000)."
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--no-worker", is_flag=True, help="Do not start the RQ worker and cron scheduler.")
def dev(port, host, no_worker):
    """Run everything: embedded servers, migrations, demo data, web app, worker, scheduler."""
    from werkzeug.serving import run_simple

    from portal import create_app, embedded
    from portal.demo import DEMO_PASSWORD, seed_demo, sign_in_lines, staff_mfa_lines
    from portal.queue import queues
    from portal.tenancy.migrations import migrate_tenants, upgrade_platform

    settings = configure_services()
    port = port or settings.port
    children: list[subprocess.Popen] = []

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started in the background
    try:
        upgrade_platform()
        migrate_tenants(jobs=2)
        seeded = seed_demo(settings)
        app = create_app()
        if not no_worker:
            env = dict(
                os.environ,
                DATABASE_URL=db.url,
                DATABASE_OWNER_URL=db.owner_url,
                REDIS_URL=queues.url,
            )
            for command in ("worker", "cron"):
                children.append(
                    subprocess.Popen([sys.executable, "-m", "portal", command], env=env)
                )
        base = settings.base_domain
        lines = [
            "",
            "MSP Portal is running (Ctrl-C stops everything).",
            f"  Platform console  http://{base}:{port}/",
            f"  Staff sign-in     {seeded['admin']} / {DEMO_PASSWORD}",
            *(staff_mfa_lines() if not settings.production else []),
            *sign_in_lines(seeded["tenants"], base_domain=base, port=port),
            f"  Database          {db.url}",
            f"  Redis             {queues.url}",
            "",
        ]
        click.echo("\n".join(lines), err=True)
        run_simple(host, port, app, threaded=True, use_reloader=False)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        db.dispose()
        queues.close()
        embedded.stop_redis(force=True)
        embedded.stop_postgres()
        click.echo("stopped.", err=True)


@cli.command(with_appcontext=False)
@click.option("--queue", "queue_names", multiple=True, help="Queue(s) to work (default: all).")
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
def worker(queue_names, burst):
    """Run an RQ worker on the portal's queues."""
    from rq import Worker

    from portal.queue import QUEUES, queues

    settings = configure_services()
    from portal.observability import configure_logging

    configure_logging(settings)
    names = queue_names or QUEUES
    Worker([queues.get(n) for n in names], connection=queues.redis).work(
        burst=burst, with_scheduler=True
    )


@cli.command(with_appcontext=False)
def cron():
    """Run RQ's cron scheduler with the jobs registered in jobs/cron.py."""
    from rq.cron import CronScheduler

    from portal.queue import queues

    configure_services()
    scheduler = CronScheduler(connection=queues.redis, name=f"portal-cron-{os.getpid()}")
    scheduler.load_config_from_file("jobs.cron")
    scheduler.start()


# ---- database -----------------------------------------------------------------------------


@cli.group("db", cls=click.Group)
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
    _migrate(jobs=jobs, canary=0)


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


# ---- tenants ------------------------------------------------------------------------------


@cli.group(cls=click.Group)
def tenants():
    """Create, list, suspend, resume, delete and migrate tenants."""


def _tenant_or_fail(session, slug):
    from portal.tenancy.models import Tenant

    tenant = session.scalars(select(Tenant).where(Tenant.slug == slug).with_for_update()).first()
    if tenant is None:
        raise CLIError(f"no tenant with slug {slug!r}")
    return tenant


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
            session, _tenant_or_fail(session, slug), actor=cli_actor(), reason=reason
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
        changed = resume_tenant(session, _tenant_or_fail(session, slug), actor=cli_actor())
    click.echo(f"resumed {slug}" if changed else f"{slug} was already active")


@tenants.command("delete")
@click.argument("slug")
@command_errors
def tenants_delete(slug):
    """Soft-delete a tenant; its schema is purged after the grace period."""
    from portal.tenancy.services import delete_tenant

    settings = configure_services(need_redis=False)
    with db.platform_scope() as session:
        tenant = _tenant_or_fail(session, slug)
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
        purge_tenant(session, _tenant_or_fail(session, slug), actor=cli_actor(), force=force)
    click.echo(f"purged {slug}")


def _migrate(*, jobs: int, canary: int) -> None:
    """Run the tenant migrations with a progress bar; exit 1 when a schema failed."""
    from portal.compliance.audit import AuditAction, record
    from portal.tenancy.migrations import MigrationInProgress, migrate_tenants

    failures: list[str] = []
    with click.progressbar(length=1, label="tenant schemas", file=sys.stderr) as bar:

        def progress(slug, error, total):
            bar.length = max(total, 1)
            if error:
                failures.append(f"failed: {slug}: {error}")
            bar.update(1)

        try:
            report = migrate_tenants(jobs=jobs, canary=canary, on_progress=progress)
        except MigrationInProgress as exc:
            raise click.ClickException(str(exc)) from None
    for line in failures:
        click.echo(line, err=True)
    if report.migrated or report.failed:
        with db.platform_scope() as session:
            record(
                session,
                AuditAction.TENANT_MIGRATE,
                actor=cli_actor(),
                detail={
                    "head": report.head,
                    "migrated": len(report.migrated),
                    "failed": sorted(report.failed),
                },
            )
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
    _migrate(jobs=jobs, canary=canary)


# ---- staff --------------------------------------------------------------------------------


@cli.group(cls=click.Group)
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
    from portal.console.services import create_staff

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
    from portal.console.services import find_staff, reset_staff_mfa

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


# ---- tenant users -------------------------------------------------------------------------


@cli.group(cls=click.Group)
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
    from portal.accounts.services import find_user

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
    from portal.accounts.models import UserStatus
    from portal.accounts.services import create_user, invite_user
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
    from portal.accounts.services import role_names
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
    from portal.accounts.services import suspend_user

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
    from portal.accounts.services import reactivate_user

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


# ---- audit --------------------------------------------------------------------------------


@cli.group(cls=click.Group)
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
            _tenant_or_fail(session, slug)
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


if __name__ == "__main__":
    main()
