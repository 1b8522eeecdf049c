"""The day each party was last assessed, for the daily refresh: what time alone changes (a customer
turning dormant, a birthday, a rolling average) is told without waiting for an event. Existing
parties start at 1970-01-01, so the first refresh assesses each of them once.

Revision ID: profile_0007
Revises: profile_0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "profile_0007"
down_revision = "profile_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("profile") as batch:
        batch.add_column(
            sa.Column("assessed_on", sa.Date(), nullable=False, server_default="1970-01-01")
        )
    op.create_index("ix_profile_assessed_on", "profile", ["assessed_on"])


def downgrade() -> None:
    op.drop_index("ix_profile_assessed_on", table_name="profile")
    with op.batch_alter_table("profile") as batch:
        batch.drop_column("assessed_on")
