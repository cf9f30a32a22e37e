"""users: a full-text search column and its GIN index; user_sessions: the Sessions page's order

Tenant migration: name no schema in operations; the runner sets search_path to each tenant's
schema and runs it in one transaction with a lock timeout.

Not CREATE INDEX CONCURRENTLY: it cannot run inside a transaction, and the runner migrates each
schema in one transaction so a failure leaves the schema at its old revision, to be retried.
The generated column rewrites `users` under an ACCESS EXCLUSIVE lock anyway, so a concurrent
build of its index would not keep the table writable. Measured on the busy 2-core machine with
100,000 users: the column 1.4 s, the GIN index 1.3 s (7 MB), so sign-ins of that tenant wait
about 3 s once; the sessions index takes 0.1 s at 100,000 rows under a SHARE lock (writes to
`user_sessions` wait). A tenant far larger would need this split into a non-transactional
revision (ADD COLUMN without the index, then CREATE INDEX CONCURRENTLY outside the runner's
transaction); not worth it at the sizes the portal is built for (benchmarks: 100,000 users).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 13:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The same text as portal.accounts.models.USER_SEARCH_VECTOR at this revision.
SEARCH_VECTOR = (
    "array_to_tsvector(array_remove(regexp_split_to_array(lower(email || ' ' || name), "
    "'(?<=[-._@+''])|[\\s(),;:\"]+'), ''))"
)


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed(SEARCH_VECTOR, persisted=True),
            nullable=True,
        ),
    )
    op.create_index(
        "ix_users_search", "users", ["search_vector"], unique=False, postgresql_using="gin"
    )
    op.create_index(
        "ix_user_sessions_last_seen_order",
        "user_sessions",
        ["last_seen_at", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_user_sessions_last_seen_order", table_name="user_sessions")
    op.drop_index("ix_users_search", table_name="users", postgresql_using="gin")
    op.drop_column("users", "search_vector")
