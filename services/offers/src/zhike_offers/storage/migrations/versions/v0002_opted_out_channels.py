"""Offers: the outbound channels a party opted out of, kept with his other switches.

Revision ID: offers_0002
Revises: offers_0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "offers_0002"
down_revision = "offers_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Sorted, comma-separated channel names; "" (every existing party): none.
    op.add_column(
        "party",
        sa.Column("opted_out_channels", sa.String(64), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_column("party", "opted_out_channels")
