"""Profiles follow identity's merges (forwarding) and carry the golden record's name.

Revision ID: profile_0002
Revises: profile_0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "profile_0002"
down_revision = "profile_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("profile") as batch:
        batch.add_column(sa.Column("merged_into", sa.String(36), nullable=True))
        batch.add_column(
            sa.Column("display_name", sa.String(200), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("profile") as batch:
        batch.drop_column("display_name")
        batch.drop_column("merged_into")
