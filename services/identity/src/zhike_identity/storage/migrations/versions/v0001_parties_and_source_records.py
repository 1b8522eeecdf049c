"""Parties, their identifying keys and the source records linked to them.

Revision ID: identity_0001
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "identity_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "party",
        sa.Column("party_id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "party_key",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("value", sa.String(128), primary_key=True),
        sa.Column("party_id", sa.String(36), sa.ForeignKey("party.party_id"), nullable=False),
    )
    op.create_table(
        "source_record",
        sa.Column("source_system", sa.String(64), primary_key=True),
        sa.Column("source_record_id", sa.String(128), primary_key=True),
        sa.Column("party_id", sa.String(36), sa.ForeignKey("party.party_id"), nullable=False),
        sa.Column("full_name", sa.String(200), nullable=False),
        sa.Column("id_type", sa.SmallInteger(), nullable=True),
        sa.Column("id_number", sa.String(64), nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("gender", sa.SmallInteger(), nullable=True),
        sa.Column("address", sa.String(500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_source_record_party_id", "source_record", ["party_id"])


def downgrade() -> None:
    op.drop_index("ix_source_record_party_id", table_name="source_record")
    op.drop_table("source_record")
    op.drop_table("party_key")
    op.drop_table("party")
