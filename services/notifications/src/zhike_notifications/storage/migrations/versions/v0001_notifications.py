"""Notifications: notifications with their facts and sealed template values, consents, the
in-app inbox, withdrawn offer decisions and webhook deliveries seen.

Revision ID: notifications_0001
Revises:
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "notifications_0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.String(36)
_NOTIFICATION_ID = sa.String(64)
# Offers' decision ids (UUIDs today); "offer-<decision id>" is its notification's id.
_DECISION_ID = sa.String(58)
_CODE = sa.String(64)
_ENUM = sa.String(24)
_ERROR = sa.String(200)
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "notification",
        sa.Column("notification_id", _NOTIFICATION_ID, primary_key=True),
        sa.Column("party_id", _ID, nullable=False),
        sa.Column("channel", _ENUM, nullable=False),
        sa.Column("category", _ENUM, nullable=False),
        sa.Column("purpose", _ENUM, nullable=False),
        sa.Column("template_id", _CODE, nullable=False),
        sa.Column("topic", _CODE, nullable=False),
        sa.Column("offer_id", _CODE, nullable=False),
        sa.Column("decision_id", _DECISION_ID, nullable=False),
        sa.Column("profile_version", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("request_digest", _CODE, nullable=False),
        sa.Column("template_values", sa.Text(), nullable=False),
        sa.Column("language", sa.String(35), nullable=False),
        sa.Column("status", _ENUM, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("due_at", _TIME, nullable=True),
        sa.Column("lease_until", _TIME, nullable=True),
        sa.Column("sending_attempt", sa.Integer(), nullable=True),
        sa.Column("sending_provider", _CODE, nullable=True),
        sa.Column("sending_started_at", _TIME, nullable=True),
        sa.Column("deferred_until", _TIME, nullable=True),
        sa.Column("suppression_reason", _ENUM, nullable=True),
        sa.Column("suppression_detail", sa.Text(), nullable=True),
        sa.Column("withdrawn_by", _ID, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("retry_attempt", sa.Integer(), nullable=True),
        sa.Column("retry_at", _TIME, nullable=True),
        sa.Column("retry_provider", _CODE, nullable=True),
        sa.Column("accepted_attempt", sa.Integer(), nullable=True),
        sa.Column("accepted_provider", _CODE, nullable=True),
        sa.Column("accepted_provider_message_id", sa.String(200), nullable=True),
        sa.Column("accepted_at", _TIME, nullable=True),
        sa.Column("gave_up_attempt", sa.Integer(), nullable=True),
        sa.Column("gave_up_reason", _ENUM, nullable=True),
        sa.Column("gave_up_error", _ERROR, nullable=True),
        sa.Column("gave_up_at", _TIME, nullable=True),
        sa.Column("last_failure_attempt", sa.Integer(), nullable=True),
        sa.Column("last_failure_error", _ERROR, nullable=True),
        sa.Column("delivered_at", _TIME, nullable=True),
        sa.Column("undelivered_at", _TIME, nullable=True),
        sa.Column("undelivered_error", _ERROR, nullable=True),
    )
    op.create_index(
        "ux_notification_idempotency_key", "notification", ["idempotency_key"], unique=True
    )
    op.create_index("ix_notification_due_at", "notification", ["due_at"])
    op.create_index(
        "ix_notification_party_created",
        "notification",
        ["party_id", "created_at", "notification_id"],
    )
    op.create_index("ix_notification_decision", "notification", ["decision_id"])
    op.create_index(
        "ix_notification_provider_message",
        "notification",
        ["accepted_provider", "accepted_provider_message_id"],
    )
    op.create_index("ix_notification_created_at", "notification", ["created_at"])
    op.create_table(
        "consent",
        sa.Column("party_id", _ID, primary_key=True),
        sa.Column("channel", _ENUM, primary_key=True),
        sa.Column("purpose", _ENUM, primary_key=True),
        sa.Column("given", sa.Boolean(), nullable=False),
        sa.Column("captured_where", sa.String(200), nullable=True),
        sa.Column("captured_at", _TIME, nullable=True),
        sa.Column("text_version", _CODE, nullable=True),
        sa.Column("decided_at", _TIME, nullable=False),
        sa.Column("profile_version", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "party_profile",
        sa.Column("party_id", _ID, primary_key=True),
        sa.Column("profile_version", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "inbox_message",
        sa.Column("notification_id", _NOTIFICATION_ID, primary_key=True),
        sa.Column("party_id", _ID, nullable=False),
        sa.Column("template_id", _CODE, nullable=False),
        sa.Column("language", sa.String(35), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("read_at", _TIME, nullable=True),
    )
    op.create_index(
        "ix_inbox_message_party_created",
        "inbox_message",
        ["party_id", "created_at", "notification_id"],
    )
    op.create_table(
        "decision_withdrawal",
        sa.Column("decision_id", _DECISION_ID, primary_key=True),
        sa.Column("party_id", _ID, nullable=False),
        sa.Column("at", _TIME, nullable=False),
    )
    op.create_table(
        "webhook_delivery",
        sa.Column("delivery_id", sa.String(255), primary_key=True),
        sa.Column("seen_at", _TIME, nullable=False),
    )
    op.create_index("ix_webhook_delivery_seen_at", "webhook_delivery", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_delivery_seen_at", table_name="webhook_delivery")
    op.drop_table("webhook_delivery")
    op.drop_table("decision_withdrawal")
    op.drop_index("ix_inbox_message_party_created", table_name="inbox_message")
    op.drop_table("inbox_message")
    op.drop_table("consent")
    op.drop_index("ix_notification_created_at", table_name="notification")
    op.drop_index("ix_notification_provider_message", table_name="notification")
    op.drop_index("ix_notification_decision", table_name="notification")
    op.drop_index("ix_notification_party_created", table_name="notification")
    op.drop_index("ix_notification_due_at", table_name="notification")
    op.drop_index("ux_notification_idempotency_key", table_name="notification")
    op.drop_table("notification")
