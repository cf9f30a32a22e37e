"""Alembic environment for one tenant schema (`-x schema=tenant_<slug>` from the command line)."""

from alembic import context

from portal.db import TENANT_PLACEHOLDER, TenantBase, load_models
from portal.tenancy.migrations import connection_for_alembic

load_models()

config = context.config
schema = config.attributes.get("schema") or context.get_x_argument(as_dictionary=True)["schema"]

with connection_for_alembic(config) as connection:
    connection = connection.execution_options(schema_translate_map={TENANT_PLACEHOLDER: schema})
    context.configure(
        connection=connection,
        target_metadata=TenantBase.metadata,
        version_table_schema=schema,
    )
    with context.begin_transaction():
        context.run_migrations()
