"""How much of its limits each tenant uses, read from the tenant schemas (as the owner role).

Counting every tenant's users in one UNION ALL needs a role that reads all tenant schemas:
the runtime role reaches a tenant only through `SET ROLE`, one tenant at a time, so the counts
come from an owner connection in a READ ONLY transaction of its own (fixed statements over
validated schema names, nothing from the request)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from portal.db import db, query_each_schema, tenant_schema
from portal.tenancy.models import Tenant, TenantStatus

NEAR_QUOTA = 0.8
# As accounts.lifecycle.count_users: unconfirmed self-registrations do not count.
COUNT_USERS = (
    "SELECT count(*) FROM {schema}.users "
    "WHERE status <> 'deleted' AND registration_expires_at IS NULL"
)


def user_counts(session: Session, slugs: list[str]) -> dict[str, int]:
    """Users (not deleted) per tenant. A schema that cannot answer (say, a failed migration
    left it without its users table) is left out rather than failing the whole page."""
    schemas = {tenant_schema(slug): slug for slug in slugs}
    if not schemas:
        return {}
    with db.owner_engine.connect() as connection:
        connection.exec_driver_sql("SET TRANSACTION READ ONLY")
        try:
            with connection.begin_nested():
                rows = list(query_each_schema(connection, list(schemas), COUNT_USERS))
        except DBAPIError:
            rows = []
            for schema in schemas:
                try:
                    with connection.begin_nested():
                        rows += query_each_schema(connection, [schema], COUNT_USERS)
                except DBAPIError:
                    continue
        connection.rollback()
    return {schemas[schema]: count for schema, count in rows}


def tenants_near_quota(session: Session, limit: int = 10) -> list[tuple[Tenant, int]]:
    """Active tenants using at least 80% of their max users, fullest first."""
    limited = session.scalars(
        select(Tenant).where(Tenant.status == TenantStatus.ACTIVE, Tenant.max_users.is_not(None))
    ).all()
    counts = user_counts(session, [t.slug for t in limited])
    near = [
        (t, counts.get(t.slug, 0))
        for t in limited
        if counts.get(t.slug, 0) >= NEAR_QUOTA * t.max_users
    ]
    near.sort(key=lambda pair: pair[1] / max(pair[0].max_users, 1), reverse=True)
    return near[:limit]
