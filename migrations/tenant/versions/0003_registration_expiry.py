"""users: unconfirmed self-registrations expire (and do not count toward max users)

Tenant migration: name no schema in operations (op.add_column("users", ...)); the runner sets
search_path to each tenant's schema. Raw SQL may use op.get_context().version_table_schema.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 12:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "users", sa.Column("registration_expires_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(
        "ix_users_registration_expires_at",
        "users",
        ["registration_expires_at"],
        unique=False,
        postgresql_where=sa.text("registration_expires_at IS NOT NULL"),
    )
    # Unconfirmed self-registrations made before this revision are known by their audit entry;
    # they expire 72 hours after they were made, like new ones (older ones at the next purge).
    op.execute(
        "UPDATE users SET registration_expires_at = created_at + interval '72 hours' "
        "WHERE status = 'invited' AND EXISTS (SELECT 1 FROM audit_entries a "
        "WHERE a.action = 'accounts:user:register' AND a.target_type = 'user' "
        "AND a.target_id = users.id::text)"
    )


def downgrade() -> None:
    op.drop_index(
        "ix_users_registration_expires_at",
        table_name="users",
        postgresql_where=sa.text("registration_expires_at IS NOT NULL"),
    )
    op.drop_column("users", "registration_expires_at")
