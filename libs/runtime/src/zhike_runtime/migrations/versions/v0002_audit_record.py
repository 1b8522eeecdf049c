"""Audit log: who read whose personal data, and every steward/admin write.

Revision ID: runtime_0002
Revises: runtime_0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "runtime_0002"
down_revision = "runtime_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_record",
        sa.Column(
            "record_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("roles", sa.String(500), nullable=False),
        sa.Column("method", sa.String(255), nullable=False),
        sa.Column("party_id", sa.String(64), nullable=False),
        sa.Column("fields", sa.String(500), nullable=False),
        sa.Column("purpose", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(64), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
    )
    op.create_index("ix_audit_record_time", "audit_record", ["recorded_at"])
    op.create_index("ix_audit_record_party", "audit_record", ["party_id", "recorded_at"])
    op.create_index("ix_audit_record_actor", "audit_record", ["actor", "recorded_at"])


def downgrade() -> None:
    op.drop_table("audit_record")
