"""consent: purposes, the text of each version, and the append-only consent records

Tenant migration: name no schema in operations; the runner sets search_path to each tenant's
schema. New, empty tables: nothing is rewritten and no lock waits on existing data.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 15:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LAWFUL_BASES = (
    "lawful_basis IN ('consent', 'contract', 'legal_obligation', 'vital_interests', "
    "'public_task', 'legitimate_interests')"
)


def append_only_ddl(schema: str) -> list[str]:
    """The consent records' append-only guard as this revision made it (the same text as
    portal.compliance.consent_models.append_only_ddl at this revision; not imported)."""
    return [
        f"""CREATE FUNCTION "{schema}".consent_records_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'consent records are append-only'
                    USING ERRCODE = 'insufficient_privilege', DETAIL = TG_OP || ' refused';
            END $$""",
        f"""CREATE TRIGGER consent_records_append_only
            BEFORE UPDATE OR DELETE ON "{schema}".consent_records
            FOR EACH ROW EXECUTE FUNCTION "{schema}".consent_records_append_only()""",
        f"""CREATE TRIGGER consent_records_no_truncate
            BEFORE TRUNCATE ON "{schema}".consent_records
            FOR EACH STATEMENT EXECUTE FUNCTION "{schema}".consent_records_append_only()""",
        f'REVOKE UPDATE, DELETE, TRUNCATE ON "{schema}".consent_records FROM "{schema}"',
    ]


def upgrade() -> None:
    op.create_table(
        "consent_purposes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("lawful_basis", sa.String(length=32), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(LAWFUL_BASES, name=op.f("ck_consent_purposes_lawful_basis")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_purposes")),
        sa.UniqueConstraint("key", name=op.f("uq_consent_purposes_key")),
    )
    op.create_table(
        "consent_purpose_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("purpose_key", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("lawful_basis", sa.String(length=32), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(LAWFUL_BASES, name=op.f("ck_consent_purpose_versions_lawful_basis")),
        sa.ForeignKeyConstraint(
            ["purpose_key"],
            ["consent_purposes.key"],
            name=op.f("fk_consent_purpose_versions_purpose_key_consent_purposes"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_purpose_versions")),
        sa.UniqueConstraint(
            "purpose_key",
            "version",
            name=op.f("uq_consent_purpose_versions_purpose_key_version"),
        ),
    )
    op.create_table(
        "consent_records",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("purpose_key", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column(
            "occurred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("client_addr", sa.String(length=45), nullable=True),
        sa.CheckConstraint(
            "action IN ('granted', 'withdrawn')", name=op.f("ck_consent_records_action")
        ),
        sa.CheckConstraint(
            "source IN ('web', 'api', 'import', 'admin')", name=op.f("ck_consent_records_source")
        ),
        sa.ForeignKeyConstraint(
            ["purpose_key", "version"],
            ["consent_purpose_versions.purpose_key", "consent_purpose_versions.version"],
            name=op.f("fk_consent_records_purpose_key_consent_purpose_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_consent_records_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_records")),
    )
    op.create_index(
        "ix_consent_records_purpose",
        "consent_records",
        ["purpose_key", "user_id", "id"],
        unique=False,
    )
    op.create_index(
        "ix_consent_records_user", "consent_records", ["user_id", "purpose_key", "id"], unique=False
    )
    schema = op.get_context().version_table_schema
    for statement in append_only_ddl(schema):
        op.execute(statement)


def downgrade() -> None:
    schema = op.get_context().version_table_schema
    op.drop_index("ix_consent_records_user", table_name="consent_records")
    op.drop_index("ix_consent_records_purpose", table_name="consent_records")
    op.drop_table("consent_records")
    op.execute(f'DROP FUNCTION "{schema}".consent_records_append_only()')
    op.drop_table("consent_purpose_versions")
    op.drop_table("consent_purposes")
