"""staff MFA, how each staff session signed in, and the staff-visit check for tenant roles

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 12:30:00.000000

`platform_access.staff_visit(session, staff, tenant)` is what a tenant site, running under its
tenant role, may ask of the platform about a staff visit: the staff member's current role and
whether their console session used a second factor, provided the member is active, the console
session still exists (not signed out, revoked or past its 12-hour life) and the tenant is
within the member's assignment; otherwise no row. It is SECURITY DEFINER (runs as its owner,
the migrating role) in a schema of its own, so tenant roles get no privilege on the platform
schema itself: a raw SELECT on platform tables stays "permission denied for schema platform".
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STAFF_VISIT_FUNCTION = """
CREATE OR REPLACE FUNCTION platform_access.staff_visit(
    p_session_id integer, p_staff_id integer, p_tenant_id integer
) RETURNS TABLE (role text, mfa boolean)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT u.role::text, s.method IN ('totp', 'backup_code')
    FROM platform.staff_sessions s
    JOIN platform.staff_users u ON u.id = s.staff_id
    WHERE s.id = p_session_id
      AND s.staff_id = p_staff_id
      AND u.active
      -- the console's absolute session lifetime (portal/staff/sessions.py)
      AND s.created_at > now() - interval '12 hours'
      AND (
          u.role = 'platform_admin'
          OR u.all_tenants
          OR EXISTS (
              SELECT 1 FROM platform.staff_tenants t
              WHERE t.staff_id = u.id AND t.tenant_id = p_tenant_id
          )
      )
$$
"""


def upgrade() -> None:
    op.add_column(
        "staff_users",
        sa.Column("mfa_secret", sa.String(length=255), nullable=True),
        schema="platform",
    )
    op.add_column(
        "staff_users",
        sa.Column("mfa_enabled_at", sa.DateTime(timezone=True), nullable=True),
        schema="platform",
    )
    op.add_column(
        "staff_users", sa.Column("mfa_last_step", sa.BigInteger(), nullable=True), schema="platform"
    )
    op.add_column(
        "staff_sessions",
        sa.Column("method", sa.String(length=16), server_default="password", nullable=False),
        schema="platform",
    )
    op.create_table(
        "staff_backup_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["staff_id"],
            ["platform.staff_users.id"],
            name=op.f("fk_staff_backup_codes_staff_id_staff_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_backup_codes")),
        schema="platform",
    )
    op.create_index(
        op.f("ix_staff_backup_codes_staff_id"),
        "staff_backup_codes",
        ["staff_id"],
        unique=False,
        schema="platform",
    )
    op.execute("CREATE SCHEMA IF NOT EXISTS platform_access")
    op.execute("REVOKE ALL ON SCHEMA platform_access FROM PUBLIC")
    op.execute("GRANT USAGE ON SCHEMA platform_access TO PUBLIC")
    op.execute(STAFF_VISIT_FUNCTION)
    # Callable by any role of this database (tenant roles included); it answers only about
    # one given visit, never lists staff.
    op.execute(
        "REVOKE ALL ON FUNCTION platform_access.staff_visit(integer, integer, integer) FROM PUBLIC"
    )
    op.execute(
        "GRANT EXECUTE ON FUNCTION platform_access.staff_visit(integer, integer, integer) TO PUBLIC"
    )


def downgrade() -> None:
    op.execute("DROP SCHEMA IF EXISTS platform_access CASCADE")
    op.drop_index(
        op.f("ix_staff_backup_codes_staff_id"), table_name="staff_backup_codes", schema="platform"
    )
    op.drop_table("staff_backup_codes", schema="platform")
    op.drop_column("staff_sessions", "method", schema="platform")
    op.drop_column("staff_users", "mfa_last_step", schema="platform")
    op.drop_column("staff_users", "mfa_enabled_at", schema="platform")
    op.drop_column("staff_users", "mfa_secret", schema="platform")
