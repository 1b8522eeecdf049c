"""An index for pruning the inbox: each consumer deletes its rows older than the retention.

Revision ID: runtime_0003
Revises: runtime_0002
Create Date: 2026-12-08
"""

from alembic import op

revision = "runtime_0003"
down_revision = "runtime_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Without it every pruning round reads the whole inbox (one row per event ever applied).
    op.create_index("ix_inbox_event_processed_at", "inbox_event", ["consumer", "processed_at"])


def downgrade() -> None:
    op.drop_index("ix_inbox_event_processed_at", table_name="inbox_event")
