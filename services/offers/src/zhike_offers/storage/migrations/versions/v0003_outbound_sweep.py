"""Offers: where the outbound sweep stands (the live outbound offers when it started, those it
decides, the last party decided), so a restart or another replica carries on from there.

Revision ID: offers_0003
Revises: offers_0002
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "offers_0003"
down_revision = "offers_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbound_sweep",
        sa.Column("sweep", sa.String(32), primary_key=True),
        sa.Column("offers", sa.JSON(), nullable=False),
        sa.Column("fresh", sa.JSON(), nullable=False),
        sa.Column("cursor", sa.String(36), nullable=False),
        sa.Column("finished", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("outbound_sweep")
