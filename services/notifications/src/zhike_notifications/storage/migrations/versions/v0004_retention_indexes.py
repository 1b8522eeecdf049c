"""Notifications: indexes for deleting inbox messages and decision withdrawals past their
retention (each by its own time, in chunks).

Revision ID: notifications_0004
Revises: notifications_0003
Create Date: 2026-12-04
"""

from alembic import op

revision = "notifications_0004"
down_revision = "notifications_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_inbox_message_created_at", "inbox_message", ["created_at"])
    op.create_index("ix_decision_withdrawal_at", "decision_withdrawal", ["at"])


def downgrade() -> None:
    op.drop_index("ix_decision_withdrawal_at", table_name="decision_withdrawal")
    op.drop_index("ix_inbox_message_created_at", table_name="inbox_message")
