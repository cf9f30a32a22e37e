"""Periodic work, registered with RQ's cron scheduler (`portal cron` runs it)."""

from rq import cron

from jobs.accounts import purge_expired_registrations
from jobs.tenancy import purge_deleted_tenants

cron.register(purge_deleted_tenants, "default", cron="17 * * * *", name="purge_deleted_tenants")
cron.register(
    purge_expired_registrations,
    "default",
    cron="41 * * * *",
    name="purge_expired_registrations",
)
