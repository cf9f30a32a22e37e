"""`portal worker` and `portal cron`: RQ worker processes and the cron scheduler."""

from __future__ import annotations

import os

import click

from portal.startup import configure_services


@click.command()
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


@click.command()
def cron():
    """Run RQ's cron scheduler with the jobs registered in jobs/cron.py."""
    from rq.cron import CronScheduler

    from portal.queue import queues

    configure_services()
    scheduler = CronScheduler(connection=queues.redis, name=f"portal-cron-{os.getpid()}")
    scheduler.load_config_from_file("jobs.cron")
    scheduler.start()
