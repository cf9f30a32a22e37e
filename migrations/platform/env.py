"""Alembic environment for the platform schema."""

from alembic import context

from portal.db import PLATFORM_SCHEMA, PlatformBase, load_models
from portal.tenancy.migrations import connection_for_alembic

load_models()


def include_name(name, type_, parent_names):
    if type_ == "schema":
        return name == PLATFORM_SCHEMA
    return True


with connection_for_alembic(context.config) as connection:
    context.configure(
        connection=connection,
        target_metadata=PlatformBase.metadata,
        version_table_schema=PLATFORM_SCHEMA,
        include_schemas=True,
        include_name=include_name,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()
