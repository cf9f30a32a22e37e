"""`portal dev`: embedded servers, migrations, demo data, web app, worker and scheduler."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import click

from portal.db import db
from portal.startup import configure_services


@click.command()
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
            f"  Database          {_without_password(db.url)}",
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


def _without_password(url: str) -> str:
    """The URL as printed: the runtime role's password is a secret, even in development."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
