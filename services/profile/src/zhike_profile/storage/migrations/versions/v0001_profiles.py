"""Profiles and the source records linked to each.

Revision ID: profile_0001
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "profile_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "profile",
        sa.Column("party_id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "profile_source_record",
        sa.Column("source_system", sa.String(64), primary_key=True),
        sa.Column("source_record_id", sa.String(128), primary_key=True),
        sa.Column("party_id", sa.String(36), sa.ForeignKey("profile.party_id"), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_profile_source_record_party_id", "profile_source_record", ["party_id"])


def downgrade() -> None:
    op.drop_index("ix_profile_source_record_party_id", table_name="profile_source_record")
    op.drop_table("profile_source_record")
    op.drop_table("profile")
