"""Offers: the projection of the profile's facts, the catalogue, contacts, outbound decisions,
the decision log and the propensity counts.

Revision ID: offers_0001
Revises:
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "offers_0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.String(36)
_OFFER = sa.String(64)
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "party",
        sa.Column("party_id", _ID, primary_key=True),
        sa.Column("profile_version", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("merged_into", _ID, nullable=True),
        sa.Column("do_not_contact", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("personalised_offers", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("preferences_version", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("preferences_updated_at", _TIME, nullable=True),
        sa.Column("updated_at", _TIME, nullable=False),
    )
    op.create_table(
        "party_fact",
        sa.Column("party_id", _ID, primary_key=True),
        sa.Column("fact_key", sa.String(320), primary_key=True),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("profile_version", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "offer",
        sa.Column("offer_id", _OFFER, primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("retired", sa.Boolean(), nullable=False),
        sa.Column("saved_at", _TIME, nullable=False),
    )
    op.create_table(
        "offer_version",
        sa.Column("offer_id", _OFFER, primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("retired", sa.Boolean(), nullable=False),
        sa.Column("saved_at", _TIME, nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
    )
    op.create_table(
        "contact_event",
        sa.Column("contact_id", sa.String(64), primary_key=True),
        sa.Column("party_id", _ID, nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("offer_id", _OFFER, nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("marketing", sa.Boolean(), nullable=False),
        sa.Column("decision_id", _ID, nullable=False),
    )
    op.create_index("ix_contact_event_party_at", "contact_event", ["party_id", "at"])
    op.create_index("ix_contact_event_at", "contact_event", ["at"])
    op.create_table(
        "outbound_decision",
        sa.Column("decision_id", _ID, primary_key=True),
        sa.Column("party_id", _ID, nullable=False),
        sa.Column("offer_id", _OFFER, nullable=False),
        sa.Column("offer_version", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("template_id", sa.String(64), nullable=False),
        sa.Column("decided_at", _TIME, nullable=False),
        sa.Column("profile_version", sa.BigInteger(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("withdrawn_at", _TIME, nullable=True),
        sa.Column("withdraw_reason", sa.String(32), nullable=True),
        sa.Column("withdraw_detail", sa.String(1000), nullable=True),
    )
    op.create_index(
        "ix_outbound_decision_party_active", "outbound_decision", ["party_id", "active"]
    )
    op.create_index(
        "ix_outbound_decision_offer_active", "outbound_decision", ["offer_id", "active"]
    )
    op.create_index("ix_outbound_decision_withdrawn_at", "outbound_decision", ["withdrawn_at"])
    op.create_table(
        "decision_log",
        sa.Column("arbitration_id", _ID, primary_key=True),
        sa.Column("party_id", _ID, nullable=False),
        sa.Column("decided_at", _TIME, nullable=False),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("placement", sa.String(64), nullable=False),
        sa.Column("profile_version", sa.BigInteger(), nullable=False),
        sa.Column("inputs_digest", sa.String(64), nullable=False),
        sa.Column("catalogue_version", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("personalised", sa.Boolean(), nullable=False),
        sa.Column("segment", sa.String(64), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("entry", sa.JSON(), nullable=False),
    )
    op.create_index(
        "ix_decision_log_party_time", "decision_log", ["party_id", "decided_at", "arbitration_id"]
    )
    op.create_index("ix_decision_log_decided_at", "decision_log", ["decided_at"])
    op.create_table(
        "propensity",
        sa.Column("offer_id", _OFFER, primary_key=True),
        sa.Column("segment", sa.String(64), primary_key=True),
        sa.Column("successes", sa.Float(), nullable=False),
        sa.Column("failures", sa.Float(), nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("propensity")
    op.drop_index("ix_decision_log_decided_at", table_name="decision_log")
    op.drop_index("ix_decision_log_party_time", table_name="decision_log")
    op.drop_table("decision_log")
    op.drop_index("ix_outbound_decision_withdrawn_at", table_name="outbound_decision")
    op.drop_index("ix_outbound_decision_offer_active", table_name="outbound_decision")
    op.drop_index("ix_outbound_decision_party_active", table_name="outbound_decision")
    op.drop_table("outbound_decision")
    op.drop_index("ix_contact_event_at", table_name="contact_event")
    op.drop_index("ix_contact_event_party_at", table_name="contact_event")
    op.drop_table("contact_event")
    op.drop_table("offer_version")
    op.drop_table("offer")
    op.drop_table("party_fact")
    op.drop_table("party")
