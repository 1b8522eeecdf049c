"""Notifications: when an offer's message may no longer be sent (the offer's valid_until, from
OfferDecided).

Revision ID: notifications_0003
Revises: notifications_0002
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "notifications_0003"
down_revision = "notifications_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notification", sa.Column("send_before", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("notification", "send_before")
