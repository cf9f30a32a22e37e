"""Tenant lifecycle jobs."""

from __future__ import annotations

import logging

from portal.compliance.audit import Actor
from portal.db import db
from portal.tenancy import services
from portal.tenancy.models import Tenant

log = logging.getLogger(__name__)


def purge_deleted_tenants() -> list[str]:
    """Drop the data of every deleted tenant whose grace period is over, one per transaction."""
    with db.platform_scope() as session:
        due = [t.id for t in services.tenants_due_for_purge(session)]
    purged = []
    for tenant_id in due:
        with db.platform_scope() as session:
            tenant = session.get(Tenant, tenant_id, with_for_update=True)
            if tenant is None or tenant.status != "deleted":
                continue  # purged or restored meanwhile: nothing to do
            slug = tenant.slug
            services.purge_tenant(session, tenant, actor=Actor.system("job:purge_deleted_tenants"))
        purged.append(slug)
        log.info("tenant purged", extra={"tenant": slug})
    return purged
