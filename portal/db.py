"""Engine, sessions and tenant scoping.

Platform models live in schema `platform`. Tenant models are declared once against the
placeholder schema `tenant`; `tenant_scope` maps it to `tenant_<slug>` with SQLAlchemy's
`schema_translate_map` and runs the whole transaction under `SET LOCAL ROLE tenant_<slug>`,
a role that can reach nothing outside its own schema. The caller that opens a scope owns its
one transaction: services flush, the scope commits (or rolls back) and then runs the callbacks
registered with `on_commit`.

A refusal is recorded even though the request that refuses rolls back (a 4xx): what a service
marks with `keep_on_rollback` (a failed sign-in's audit entry) is written again, in a short
transaction of its own in the same scope, by whoever rolled back (`write_kept`: the web
request's end, and the scopes below). On commit it is already in, and nothing is repeated.

Two database roles (issue 11 §6). Requests and jobs connect as the runtime role (`engine`),
which owns nothing: data privileges on the platform tables (INSERT and SELECT only on the audit
trail) and membership in each tenant role, so it cannot alter a table, disable the audit
trigger or, after `RESET ROLE`, read any tenant's tables. Migrations and the DDL of
provisioning and purge run as the owner role (`owner_engine`, `owner_connection`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, MetaData, create_engine, event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session

if TYPE_CHECKING:
    from portal.tenancy.models import Tenant
    from portal.tenancy.routing import TenantRef

PLATFORM_SCHEMA = "platform"
TENANT_PLACEHOLDER = "tenant"

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class PlatformBase(DeclarativeBase):
    metadata = MetaData(schema=PLATFORM_SCHEMA, naming_convention=NAMING)


class TenantBase(DeclarativeBase):
    metadata = MetaData(schema=TENANT_PLACEHOLDER, naming_convention=NAMING)


_IDENT = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def tenant_schema(slug: str) -> str:
    """Schema (and role) name of a tenant. Slugs use hyphens, identifiers underscores."""
    name = "tenant_" + slug.replace("-", "_")
    if not _IDENT.match(name):
        raise ValueError(f"not a valid tenant slug: {slug!r}")
    return name


def advisory_key(name: str) -> int:
    """A stable 64-bit key for pg_advisory_xact_lock from a name ("audit:tenant_acme")."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def sqlalchemy_url(url: str) -> str:
    """Use psycopg 3 for plain postgresql:// URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Database:
    """The one engine of a process, and the scopes that open transactions on it."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.url: str | None = None
        # The owner role's engine, for DDL only (migrations, provisioning, purge); the same
        # object as `engine` when one URL serves both (development without a runtime role).
        self.owner_engine: Engine | None = None
        self.owner_url: str | None = None
        self._runtime_role: str | None = None
        self._fork_hook = False

    def configure(self, url: str, owner_url: str | None = None, **engine_options) -> None:
        """Requests and jobs connect with `url` (the runtime role); DDL with `owner_url`."""
        owner_url = owner_url or url
        if self.engine is not None and self.url == url and self.owner_url == owner_url:
            return
        self.dispose()
        self._runtime_role = None
        # hide_parameters: a database error's text (logged, or shown in a traceback) carries
        # the statement but not its bound values, which hold emails and other personal data.
        options = dict(pool_size=10, max_overflow=20, pool_recycle=1800, hide_parameters=True)
        options.update(engine_options)
        self.url, self.owner_url = url, owner_url
        self.engine = create_engine(sqlalchemy_url(url), **options)
        _ping_idle_connections(self.engine)
        if owner_url == url:
            self.owner_engine = self.engine
        else:
            self.owner_engine = create_engine(
                sqlalchemy_url(owner_url),
                pool_size=2,
                max_overflow=8,
                pool_recycle=1800,
                hide_parameters=True,
            )
            _ping_idle_connections(self.owner_engine)
        if not self._fork_hook:
            # A forked RQ work horse must not share pooled connections with its parent.
            os.register_at_fork(after_in_child=self._after_fork)
            self._fork_hook = True

    @property
    def split_roles(self) -> bool:
        """Whether requests run as a runtime role distinct from the owner of the tables."""
        return self.owner_engine is not None and self.owner_engine is not self.engine

    def _after_fork(self) -> None:
        for engine in {self.engine, self.owner_engine} - {None}:
            engine.dispose(close=False)

    def dispose(self) -> None:
        for engine in {self.engine, self.owner_engine} - {None}:
            engine.dispose()

    def _require_owner_engine(self) -> Engine:
        self._require_engine()
        return self.owner_engine

    def owner_connection(self, session: Session) -> Connection:
        """A connection as the owner role for DDL that belongs with `session`'s transaction.

        With one role for both, that is the session's own connection (one transaction). With
        a runtime role, it is an owner connection whose transaction commits just before the
        session's (`before_commit`) and rolls back with it; should the session's commit then
        fail, the statements registered with `on_owner_undo` run to take the DDL back.
        """
        if not self.split_roles:
            return session.connection()
        connection = session.info.get("owner_connection")
        if connection is None:
            connection = self._require_owner_engine().connect()
            connection.begin()
            session.info["owner_connection"] = connection
        return connection

    def runtime_role(self) -> str | None:
        """The runtime role's name when it is distinct from the owner (else None)."""
        if not self.split_roles:
            return None
        if self._runtime_role is None:
            with self.engine.connect() as conn:
                self._runtime_role = conn.exec_driver_sql("SELECT current_user").scalar()
        return self._runtime_role

    def _require_engine(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("database not configured: call db.configure(url) first")
        return self.engine

    def session(self) -> Session:
        """A new platform session; the caller commits. Prefer `platform_scope`."""
        return Session(self._require_engine(), expire_on_commit=False)

    @contextmanager
    def platform_scope(self) -> Iterator[Session]:
        """One transaction on the platform schema, committed on success."""
        with self.session() as session:
            try:
                with session.begin():
                    yield session
            except BaseException:
                write_kept(session)
                raise

    def open_tenant_session(self, tenant: Tenant | TenantRef | str) -> Session:
        """A session whose every transaction is confined to the tenant's schema and role.

        The schema map and `SET LOCAL ROLE` are applied whenever the session begins a
        transaction (see `_scope_transaction`), so they hold again after a commit.
        """
        slug = tenant if isinstance(tenant, str) else tenant.slug
        session = Session(self._require_engine(), expire_on_commit=False)
        session.info["tenant_schema"] = tenant_schema(slug)
        if not isinstance(tenant, str):
            session.info["tenant"] = tenant
        session.begin()
        session.connection()  # begin now, so the role is in force before any statement
        return session

    @contextmanager
    def tenant_scope(self, tenant: Tenant | str) -> Iterator[Session]:
        """One transaction inside the tenant's schema under its role, committed on success."""
        session = self.open_tenant_session(tenant)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            write_kept(session)
            raise
        finally:
            session.close()


db = Database()


def scope_tenant(session: Session) -> Tenant | TenantRef:
    """The tenant whose scope `session` belongs to. Fails loudly for a platform session, or a
    tenant scope opened with a bare slug, rather than let a service guess."""
    tenant = session.info.get("tenant")
    if tenant is None:
        raise RuntimeError(
            "no tenant in this session's scope: open it with the Tenant (or TenantRef), "
            "not a slug, to call a service that needs the tenant"
        )
    return tenant


IDLE_PING_SECONDS = 10.0


def _ping_idle_connections(engine: Engine) -> None:
    """Check a pooled connection before use only if it sat idle for a while.

    SQLAlchemy's pool_pre_ping costs a round trip on every checkout, about a sixth of a console
    request here. A connection in steady use is alive; one that idled (through a database
    restart, or a firewall's idle timeout) is pinged, and replaced if dead.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, proxy) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            dbapi_connection.rollback()
        except Exception as exc:
            raise DisconnectionError(f"stale pooled connection: {exc}") from exc


def on_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` after the session's transaction commits; drop it on rollback."""
    # Tagged with the innermost transaction, so rolling back a savepoint drops only what was
    # registered inside it (a refused user in a bulk action keeps the others' mail).
    current = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault("on_commit", []).append((current, callback))


def keep_on_rollback(session: Session, write: Callable[[Session], None]) -> None:
    """`write`, done in this transaction, is done again by `write_kept` should it roll back."""
    if session.in_nested_transaction():
        # A savepoint's rollback would take the write with it while the scope commits.
        raise RuntimeError("keep_on_rollback inside a savepoint: the write could be lost")
    session.info.setdefault("kept", []).append(write)


def write_kept(session: Session) -> None:
    """After the session's transaction rolled back: the writes marked with `keep_on_rollback`,
    again, in one short transaction of the same scope (schema map and role are applied anew)."""
    writes = session.info.pop("kept", None)
    if not writes:
        return
    with session.begin():
        for write in writes:
            write(session)


@event.listens_for(Session, "after_begin")
def _scope_transaction(session: Session, transaction, connection) -> None:
    schema = session.info.get("tenant_schema")
    if schema:
        connection.execution_options(schema_translate_map={TENANT_PLACEHOLDER: schema})
        connection.exec_driver_sql(f'SET LOCAL ROLE "{schema}"')


def on_owner_undo(session: Session, statements: list[str]) -> None:
    """DDL that undoes what the session's owner connection committed, should the session's own
    commit fail after it (see `Database.owner_connection`)."""
    if db.split_roles:
        session.info.setdefault("owner_undo", []).extend(statements)


@event.listens_for(Session, "before_commit")
def _commit_owner_ddl(session: Session) -> None:
    connection = session.info.pop("owner_connection", None)
    if connection is None:
        return
    try:
        connection.commit()
    finally:
        connection.close()
    session.info["owner_committed"] = True


@event.listens_for(Session, "after_transaction_end")
def _end_owner_ddl(session: Session, transaction) -> None:
    if transaction.parent is not None:
        return
    connection = session.info.pop("owner_connection", None)
    if connection is not None:  # the session rolled back (or closed) before committing
        try:
            connection.rollback()
        finally:
            connection.close()
    undo = session.info.pop("owner_undo", [])
    if session.info.pop("owner_committed", False) and undo:
        # The owner's DDL committed but the session's commit did not: take the DDL back.
        for statement in undo:  # each on its own: a role still used elsewhere stays
            try:
                with db._require_owner_engine().begin() as owner:
                    owner.exec_driver_sql(statement)
            except Exception as exc:
                logging.getLogger(__name__).warning(
                    "could not undo owner DDL after a failed commit",
                    extra={"statement": statement, "error": type(exc).__name__},
                )


@event.listens_for(Session, "after_commit")
def _run_on_commit(session: Session) -> None:
    session.info.pop("owner_committed", None)
    session.info.pop("owner_undo", None)
    session.info.pop("kept", None)  # committed with everything else
    callbacks = session.info.pop("on_commit", [])
    for _, callback in callbacks:
        callback()


@event.listens_for(Session, "after_soft_rollback")
def _drop_on_commit(session: Session, previous_transaction) -> None:
    if not previous_transaction.nested:
        session.info.pop("on_commit", None)
        return
    kept = [
        (owner, callback)
        for owner, callback in session.info.get("on_commit", [])
        if owner is not previous_transaction
    ]
    session.info["on_commit"] = kept


def query_each_schema(connection, schemas: list[str], template: str, chunk: int = 500):
    """Run `template` (SQL with a {schema} placeholder, selecting one value) in each schema,
    as a few UNION ALL statements; yields (schema, value). Schema names must be tenant schema
    names (validated identifiers), never user input."""
    for name in schemas:
        if not _IDENT.match(name):
            raise ValueError(f"not a schema name: {name!r}")
    for start in range(0, len(schemas), chunk):
        part = schemas[start : start + chunk]
        selects = []
        for name in part:
            per_schema = template.format(schema=f'"{name}"')
            selects.append(f"SELECT '{name}' AS schema, ({per_schema}) AS value")
        for row in connection.execute(text(" UNION ALL ".join(selects))):
            yield row[0], row[1]


# ---- the runtime role ----------------------------------------------------------------------


def runtime_role_name(database: str) -> str:
    """The runtime role of a database. Roles are cluster-wide, so the name carries the
    database's: two databases on one cluster (CI's two runs, parallel developers) never share
    one."""
    base = re.sub(r"[^a-z0-9_]", "_", database.lower())
    name = f"{base}_runtime"
    if len(name) > 63:
        digest = hashlib.sha256(database.encode()).hexdigest()[:8]
        name = f"{base[:45]}_{digest}_runtime"
    return name


def ensure_runtime_role(owner_url: str, name: str | None = None) -> str:
    """Create (or keep) the runtime role of the owner URL's database and return a URL for it.

    The role logs in, owns nothing and inherits nothing (NOINHERIT: a tenant role's privileges
    apply only after `SET ROLE`, so `RESET ROLE` leads back to no tenant at all); its grants
    come from `grant_runtime`. Its password is derived from the owner URL, so every process
    that knows that URL computes the same one and no secret needs storing; whoever knows the
    owner URL already holds more than the runtime role can do.
    """
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    owner = make_url(owner_url)
    name = name or runtime_role_name(owner.database or "postgres")
    password = hashlib.sha256(f"portal-runtime-role\0{name}\0{owner_url}".encode()).hexdigest()
    options = sql.SQL("LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION")
    with psycopg.connect(owner_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        verb = sql.SQL("ALTER ROLE" if exists else "CREATE ROLE")
        statement = sql.SQL("{} {} {} PASSWORD {}").format(
            verb, sql.Identifier(name), options, sql.Literal(password)
        )
        try:
            conn.execute(statement)
        except psycopg.errors.DuplicateObject:
            pass  # created by a process starting beside this one, with the same password
    runtime = owner.set(username=name, password=password)
    return runtime.render_as_string(hide_password=False)


def grant_runtime(connection: Connection, role: str) -> None:
    """Give the runtime role what requests and jobs need, as the owner: data privileges on the
    platform tables (only INSERT and SELECT on the audit trail, nothing on Alembic's version
    table) and membership in every tenant role. Idempotent; run after every platform upgrade."""
    quoted = '"' + role.replace('"', '""') + '"'
    statements = [
        f"GRANT USAGE ON SCHEMA {PLATFORM_SCHEMA} TO {quoted}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {PLATFORM_SCHEMA} "
        f"TO {quoted}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {PLATFORM_SCHEMA} TO {quoted}",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON {PLATFORM_SCHEMA}.audit_entries FROM {quoted}",
        f"REVOKE ALL ON {PLATFORM_SCHEMA}.alembic_version FROM {quoted}",
    ]
    connection.exec_driver_sql(";\n".join(statements))
    roles = connection.execute(
        text(
            "SELECT r.rolname FROM pg_roles r WHERE r.rolname LIKE 'tenant\\_%' "
            "AND r.rolname IN (SELECT 'tenant_' || replace(slug, '-', '_') FROM platform.tenants) "
            "AND NOT pg_has_role(:role, r.oid, 'MEMBER')"
        ),
        {"role": role},
    ).scalars()
    names = [name for name in roles if _IDENT.match(name)]
    for start in range(0, len(names), 500):
        chunk = ", ".join(f'"{name}"' for name in names[start : start + 500])
        connection.exec_driver_sql(f"GRANT {chunk} TO {quoted}")


def load_models() -> None:
    """Import every model module so both metadata objects are complete."""
    import portal.accounts.models  # noqa: F401
    import portal.compliance.consent_models  # noqa: F401
    import portal.compliance.models  # noqa: F401
    import portal.mail_models  # noqa: F401
    import portal.staff.models  # noqa: F401
    import portal.tenancy.models  # noqa: F401
