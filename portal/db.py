"""Engine, sessions and tenant scoping.

Platform models live in schema `platform`. Tenant models are declared once against the
placeholder schema `tenant`; `tenant_scope` maps it to `tenant_<slug>` with SQLAlchemy's
`schema_translate_map` and runs the whole transaction under `SET LOCAL ROLE tenant_<slug>`,
a role that can reach nothing outside its own schema. The caller that opens a scope owns its
one transaction: services flush, the scope commits (or rolls back) and then runs the callbacks
registered with `on_commit`.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy import Engine, MetaData, create_engine, event, text
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
        self._fork_hook = False

    def configure(self, url: str, **engine_options) -> None:
        if self.engine is not None and self.url == url:
            return
        if self.engine is not None:
            self.engine.dispose()
        options = dict(pool_size=10, max_overflow=20, pool_recycle=1800)
        options.update(engine_options)
        self.url = url
        self.engine = create_engine(sqlalchemy_url(url), **options)
        _ping_idle_connections(self.engine)
        if not self._fork_hook:
            # A forked RQ work horse must not share pooled connections with its parent.
            os.register_at_fork(after_in_child=self._after_fork)
            self._fork_hook = True

    def _after_fork(self) -> None:
        if self.engine is not None:
            self.engine.dispose(close=False)

    def dispose(self) -> None:
        if self.engine is not None:
            self.engine.dispose()

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
            with session.begin():
                yield session

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
            raise
        finally:
            session.close()


db = Database()

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


@event.listens_for(Session, "after_begin")
def _scope_transaction(session: Session, transaction, connection) -> None:
    schema = session.info.get("tenant_schema")
    if schema:
        connection.execution_options(schema_translate_map={TENANT_PLACEHOLDER: schema})
        connection.exec_driver_sql(f'SET LOCAL ROLE "{schema}"')


@event.listens_for(Session, "after_commit")
def _run_on_commit(session: Session) -> None:
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


def load_models() -> None:
    """Import every model module so both metadata objects are complete."""
    import portal.accounts.models  # noqa: F401
    import portal.compliance.models  # noqa: F401
    import portal.console.models  # noqa: F401
    import portal.mail  # noqa: F401
    import portal.tenancy.models  # noqa: F401
