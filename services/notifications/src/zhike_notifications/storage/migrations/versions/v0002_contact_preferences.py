"""Notifications: the customer's do-not-contact and opted-out channels, as offers announces them
(ContactPreferencesChanged).

Revision ID: notifications_0002
Revises: notifications_0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "notifications_0002"
down_revision = "notifications_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contact_preferences",
        sa.Column("party_id", sa.String(36), primary_key=True),
        sa.Column("do_not_contact", sa.Boolean(), nullable=False),
        sa.Column("opted_out_channels", sa.String(64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("contact_preferences")
