"""Tenant account jobs: the expiry of unconfirmed self-registrations.

Each tenant is worked in bounded batches, each batch its own transaction, so a large backlog
never holds locks for long and a worker killed mid-way leaves only whole batches done; running
it again finishes the rest (the job is idempotent). A tenant whose schema cannot answer (say, a
failed migration) is logged and skipped, not allowed to stop the others.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from portal.accounts import invitations
from portal.compliance.audit import Actor
from portal.db import db
from portal.tenancy.models import Tenant, TenantStatus

log = logging.getLogger(__name__)


def purge_expired_registrations(batch: int = invitations.REGISTRATION_PURGE_BATCH) -> int:
    """Remove every tenant's unconfirmed self-registrations past their expiry (72 h after
    signing up); returns how many were removed."""
    with db.platform_scope() as session:
        slugs = list(
            session.scalars(
                select(Tenant.slug).where(Tenant.status != TenantStatus.DELETED).order_by(Tenant.id)
            )
        )
    actor = Actor.system("job:purge_expired_registrations")
    total = 0
    for slug in slugs:
        while True:
            try:
                with db.tenant_scope(slug) as session:
                    removed = invitations.purge_expired_registrations(
                        session, actor=actor, limit=batch
                    )
            except DBAPIError as error:
                log.warning(
                    "registration purge skipped a tenant",
                    extra={"tenant": slug, "error": type(error.orig or error).__name__},
                )
                break
            total += removed
            if removed:
                log.info("expired registrations purged", extra={"tenant": slug, "count": removed})
            if removed < batch:
                break
    return total
