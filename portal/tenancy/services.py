"""Tenant lifecycle: validation, provisioning, limits, domains, suspend/resume/delete/purge.

Each function is one state change: it validates, returns early when nothing changes, changes
state, writes its audit entry and registers after-commit work. None of them commits; the
caller's scope does. Provisioning runs in the caller's transaction too, so a tenant row never
exists without its schema and role, or the other way round.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.compliance.audit import Actor, AuditAction, append_only_ddl, record
from portal.db import TENANT_PLACEHOLDER, TenantBase, db, on_commit, on_owner_undo, tenant_schema
from portal.tenancy import routing
from portal.tenancy.migrations import script_directory
from portal.tenancy.models import Tenant, TenantDomain, TenantStatus
from portal.validation import InputError

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$")
RESERVED_SLUGS = frozenset(
    "platform public www admin api app console static assets mail smtp status health metrics "
    "auth login sso tenant tenants postgres pg_catalog information_schema system root".split()
)
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class TenancyError(InputError):
    """A tenant change a person can correct."""


# ---- validation ---------------------------------------------------------------------------


def validate_slug(slug: str) -> str:
    slug = (slug or "").strip()
    if not 3 <= len(slug) <= 40:
        raise TenancyError("A slug has 3 to 40 characters.", "slug")
    if not SLUG_RE.match(slug) or "--" in slug:
        raise TenancyError(
            "Use lower-case letters, digits and single hyphens; start and end with a letter "
            "or digit.",
            "slug",
        )
    if slug in RESERVED_SLUGS:
        raise TenancyError(f"“{slug}” is reserved; choose another slug.", "slug")
    return slug


def validate_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise TenancyError("Give the organisation a name.", "name")
    if len(name) > 200:
        raise TenancyError("A name has at most 200 characters.", "name")
    return name


def validate_domain(domain: str, base_domain: str) -> str:
    domain = (domain or "").strip().lower().rstrip(".")
    if not DOMAIN_RE.match(domain):
        raise TenancyError(
            f"“{domain}” is not a valid domain name (e.g. portal.acme.com).", "domain"
        )
    if domain == base_domain or domain.endswith("." + base_domain):
        raise TenancyError(
            f"Domains under {base_domain} are assigned automatically (<slug>.{base_domain}).",
            "domain",
        )
    return domain


# Largest value each limit's column holds (max_storage_bytes is a bigint, the others integers).
LIMIT_MAXIMUM = {
    "max_users": 2**31 - 1,
    "max_storage_bytes": 2**63 - 1,
    "api_requests_per_minute": 2**31 - 1,
}


def validate_limit(field: str, value: int | None) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TenancyError("Enter a whole number of 0 or more, or leave empty for no limit.", field)
    if value > LIMIT_MAXIMUM[field]:
        raise TenancyError(f"At most {LIMIT_MAXIMUM[field]:,}; leave empty for no limit.", field)
    return value


# ---- provisioning -------------------------------------------------------------------------


def bootstrap_ddl(schema: str, runtime_role: str | None = None) -> list[str]:
    """Role, schema and default grants: everything a tenant schema needs before its tables.

    The schema and its tables belong to the connecting (owner) role; the tenant role gets only
    data privileges, so it can neither alter tables nor drop the audit trigger. The runtime
    role (requests and jobs) becomes a member of the tenant role, so that it can `SET LOCAL
    ROLE` to it; being NOINHERIT, it gains none of the tenant's privileges without doing so.
    """
    return [
        f"""DO $$ BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{schema}') THEN
                    CREATE ROLE "{schema}" NOLOGIN NOINHERIT;
                END IF;
            END $$""",
        f'GRANT "{schema}" TO CURRENT_USER',
        *([f'GRANT "{schema}" TO "{runtime_role}"'] if runtime_role else []),
        f'CREATE SCHEMA "{schema}"',
        f'GRANT USAGE ON SCHEMA "{schema}" TO "{schema}"',
        f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" '
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "{schema}"',
        f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" GRANT USAGE, SELECT ON SEQUENCES TO "{schema}"',
    ]


def table_guards_ddl(schema: str) -> list[str]:
    """Per-table rules that the models cannot express: append-only audit and consent records,
    read-only version."""
    return [
        *append_only_ddl(schema, "audit_entries"),
        *append_only_ddl(schema, "consent_records"),
    ]


def version_table_ddl(schema: str, revision: str) -> list[str]:
    """Alembic's version table, as Alembic itself creates it, stamped at `revision`."""
    return [
        f'CREATE TABLE "{schema}".alembic_version (version_num VARCHAR(32) NOT NULL, '
        "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))",
        f"INSERT INTO \"{schema}\".alembic_version (version_num) VALUES ('{revision}')",
        f'REVOKE ALL ON "{schema}".alembic_version FROM "{schema}"',
    ]


def provision_schema(session: Session, slug: str) -> str:
    """Create `tenant_<slug>` at the migration head, in the session's transaction; returns
    the head revision. The statements that need no compiling go in one round trip each."""
    schema = tenant_schema(slug)
    head = script_directory("tenant").get_current_head()
    # DDL needs the owner role; with a separate runtime role this is an owner connection whose
    # transaction commits together with the session's (see Database.owner_connection).
    connection = db.owner_connection(session)
    role_existed = connection.execute(
        text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": schema}
    ).first()
    connection.exec_driver_sql(";\n".join(bootstrap_ddl(schema, db.runtime_role())))
    mapped = connection.execution_options(schema_translate_map={TENANT_PLACEHOLDER: schema})
    TenantBase.metadata.create_all(mapped, checkfirst=False)
    connection.exec_driver_sql(
        ";\n".join(table_guards_ddl(schema) + version_table_ddl(schema, head))
    )
    undo = [f'DROP SCHEMA IF EXISTS "{schema}" CASCADE']
    if not role_existed:
        undo += [f'DROP OWNED BY "{schema}"', f'DROP ROLE IF EXISTS "{schema}"']
    on_owner_undo(session, undo)
    return head


def drop_schema(session: Session, slug: str) -> None:
    """Drop the tenant's schema and, when nothing else uses it, its role."""
    schema = tenant_schema(slug)
    connection = db.owner_connection(session)  # DDL: the owner role, never the runtime role
    connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    exists = connection.execute(
        text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": schema}
    ).first()
    if not exists:
        return
    connection.exec_driver_sql(f'DROP OWNED BY "{schema}"')
    savepoint = connection.begin_nested if db.split_roles else session.begin_nested
    try:
        with savepoint():
            connection.exec_driver_sql(f'DROP ROLE "{schema}"')
    except Exception:
        # The role still holds privileges in another database of this cluster (roles are
        # cluster-wide); that database's purge drops it.
        pass


# ---- lifecycle ----------------------------------------------------------------------------


def _ensure_unique(session: Session, slug: str | None, domains: list[str]) -> None:
    if slug and session.scalar(select(Tenant.id).where(Tenant.slug == slug)):
        raise TenancyError(f"A tenant with slug “{slug}” already exists.", "slug")
    for domain in domains:
        if session.scalar(select(TenantDomain.id).where(TenantDomain.domain == domain)):
            raise TenancyError(f"{domain} is already used by another tenant.", "domain")


def create_tenant(
    session: Session,
    *,
    slug: str,
    name: str,
    actor: Actor,
    base_domain: str,
    domains: list[str] | tuple[str, ...] = (),
    max_users: int | None = None,
    max_storage_bytes: int | None = None,
    api_requests_per_minute: int | None = None,
) -> Tenant:
    slug = validate_slug(slug)
    name = validate_name(name)
    clean_domains = sorted({validate_domain(d, base_domain) for d in domains if d and d.strip()})
    limits = {
        "max_users": validate_limit("max_users", max_users),
        "max_storage_bytes": validate_limit("max_storage_bytes", max_storage_bytes),
        "api_requests_per_minute": validate_limit(
            "api_requests_per_minute", api_requests_per_minute
        ),
    }
    _ensure_unique(session, slug, clean_domains)
    head = script_directory("tenant").get_current_head()
    tenant = Tenant(
        slug=slug, name=name, status=TenantStatus.ACTIVE, schema_revision=head, **limits
    )
    tenant.domains = [TenantDomain(domain=d) for d in clean_domains]
    try:
        with session.begin_nested():
            session.add(tenant)
            session.flush()
    except IntegrityError:
        # Lost a race with a concurrent creation of the same slug or domain.
        raise TenancyError("That slug or domain was just taken; choose another.", "slug") from None
    provision_schema(session, slug)
    record(
        session,
        AuditAction.TENANT_CREATE,
        actor=actor,
        target=("tenant", tenant.id),
        detail={"slug": slug, "name": name, "domains": clean_domains, **limits},
    )
    on_commit(session, routing.invalidate)
    return tenant


def update_limits(session: Session, tenant: Tenant, *, actor: Actor, **limits: int | None) -> bool:
    """Change the tenant's limits; returns False when nothing changed."""
    unknown = set(limits) - set(LIMIT_MAXIMUM)
    if unknown:
        raise TenancyError(f"Unknown limit: {', '.join(sorted(unknown))}")
    new = {field: validate_limit(field, value) for field, value in limits.items()}
    before = {field: getattr(tenant, field) for field in new}
    changed = {f: v for f, v in new.items() if before[f] != v}
    if not changed:
        return False
    for field, value in changed.items():
        setattr(tenant, field, value)
    session.flush()
    record(
        session,
        AuditAction.TENANT_UPDATE,
        actor=actor,
        target=("tenant", tenant.id),
        detail={"slug": tenant.slug, "before": {f: before[f] for f in changed}, "after": changed},
    )
    return True


def rename_tenant(session: Session, tenant: Tenant, *, name: str, actor: Actor) -> bool:
    name = validate_name(name)
    if name == tenant.name:
        return False
    before, tenant.name = tenant.name, name
    session.flush()
    record(
        session,
        AuditAction.TENANT_UPDATE,
        actor=actor,
        target=("tenant", tenant.id),
        detail={"slug": tenant.slug, "before": {"name": before}, "after": {"name": name}},
    )
    on_commit(session, routing.invalidate)
    return True


def _change_status(session, tenant, status, action, *, actor, detail=None) -> None:
    before = tenant.status
    tenant.status = status
    session.flush()
    record(
        session,
        action,
        actor=actor,
        target=("tenant", tenant.id),
        detail={"slug": tenant.slug, "before": before, "after": status, **(detail or {})},
    )
    on_commit(session, routing.invalidate)


def suspend_tenant(session: Session, tenant: Tenant, *, actor: Actor, reason: str) -> bool:
    reason = " ".join((reason or "").split())
    if not reason:
        raise TenancyError(
            "Say why the tenant is suspended; the reason goes in the audit trail.", "reason"
        )
    if len(reason) > 500:
        raise TenancyError("Keep the reason under 500 characters.", "reason")
    if tenant.status == TenantStatus.SUSPENDED:
        return False
    if tenant.status == TenantStatus.DELETED:
        raise TenancyError("A deleted tenant cannot be suspended; restore it first.")
    tenant.suspended_reason = reason
    _change_status(
        session,
        tenant,
        TenantStatus.SUSPENDED,
        AuditAction.TENANT_SUSPEND,
        actor=actor,
        detail={"reason": reason},
    )
    return True


def resume_tenant(session: Session, tenant: Tenant, *, actor: Actor) -> bool:
    if tenant.status == TenantStatus.ACTIVE:
        return False
    if tenant.status == TenantStatus.DELETED:
        raise TenancyError("A deleted tenant is restored, not resumed.")
    tenant.suspended_reason = None
    _change_status(session, tenant, TenantStatus.ACTIVE, AuditAction.TENANT_RESUME, actor=actor)
    return True


def delete_tenant(session: Session, tenant: Tenant, *, actor: Actor, grace_days: int) -> bool:
    """Soft delete: the tenant stops serving at once; its data is purged after the grace period."""
    if tenant.status == TenantStatus.DELETED:
        return False
    now = datetime.now(UTC)
    tenant.deleted_at = now
    tenant.purge_after = now + timedelta(days=grace_days)
    _change_status(
        session,
        tenant,
        TenantStatus.DELETED,
        AuditAction.TENANT_DELETE,
        actor=actor,
        detail={"purge_after": tenant.purge_after.isoformat()},
    )
    return True


def restore_tenant(session: Session, tenant: Tenant, *, actor: Actor) -> bool:
    if tenant.status != TenantStatus.DELETED:
        return False
    tenant.deleted_at = None
    tenant.purge_after = None
    status = TenantStatus.SUSPENDED if tenant.suspended_reason else TenantStatus.ACTIVE
    _change_status(session, tenant, status, AuditAction.TENANT_RESTORE, actor=actor)
    return True


def purge_tenant(session: Session, tenant: Tenant, *, actor: Actor, force: bool = False) -> None:
    """Drop the schema and role of a deleted tenant whose grace period is over, then its row."""
    if tenant.status != TenantStatus.DELETED:
        raise TenancyError("Only a deleted tenant can be purged.")
    if not force and tenant.purge_after and tenant.purge_after > datetime.now(UTC):
        raise TenancyError(f"The grace period runs until {tenant.purge_after:%Y-%m-%d %H:%M} UTC.")
    tenant_id, slug = tenant.id, tenant.slug
    drop_schema(session, slug)
    session.delete(tenant)
    session.flush()
    record(
        session,
        AuditAction.TENANT_PURGE,
        actor=actor,
        target=("tenant", tenant_id),
        detail={"slug": slug},
    )
    on_commit(session, routing.invalidate)


def tenants_due_for_purge(session: Session, now: datetime | None = None) -> list[Tenant]:
    now = now or datetime.now(UTC)
    return list(
        session.scalars(
            select(Tenant)
            .where(Tenant.status == TenantStatus.DELETED, Tenant.purge_after <= now)
            .order_by(Tenant.purge_after)
        )
    )


def add_domain(
    session: Session, tenant: Tenant, domain: str, *, actor: Actor, base_domain: str
) -> TenantDomain:
    domain = validate_domain(domain, base_domain)
    if any(d.domain == domain for d in tenant.domains):
        raise TenancyError(f"{domain} is already a domain of this tenant.", "domain")
    _ensure_unique(session, None, [domain])
    row = TenantDomain(domain=domain)
    try:
        with session.begin_nested():
            tenant.domains.append(row)
            session.flush()
    except IntegrityError:
        raise TenancyError(f"{domain} is already used by another tenant.", "domain") from None
    record(
        session,
        AuditAction.DOMAIN_ADD,
        actor=actor,
        target=("tenant", tenant.id),
        detail={"slug": tenant.slug, "domain": domain},
    )
    on_commit(session, routing.invalidate)
    return row


def remove_domain(session: Session, tenant: Tenant, domain: str, *, actor: Actor) -> bool:
    row = next((d for d in tenant.domains if d.domain == domain), None)
    if row is None:
        return False
    tenant.domains.remove(row)
    session.flush()
    record(
        session,
        AuditAction.DOMAIN_REMOVE,
        actor=actor,
        target=("tenant", tenant.id),
        detail={"slug": tenant.slug, "domain": domain},
    )
    on_commit(session, routing.invalidate)
    return True


def count_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Tenant.status, func.count()).group_by(Tenant.status))
    counts = {s.value: 0 for s in TenantStatus}
    counts.update({status: n for status, n in rows})
    return counts
