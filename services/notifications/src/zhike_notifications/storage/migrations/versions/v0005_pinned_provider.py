"""Notifications: the provider a message is pinned to once an attempt there went unanswered (a
time-out, a crash): it may hold the message, so no later attempt goes to another.

Revision ID: notifications_0005
Revises: notifications_0004
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "notifications_0005"
down_revision = "notifications_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "notification",
        sa.Column("pinned_provider", sa.String(64), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_column("notification", "pinned_provider")
