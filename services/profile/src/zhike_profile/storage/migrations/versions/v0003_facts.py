"""Source-system facts per source record, versioned links, and what was last published.

Links gain the version identity gives each change of a record's party (existing links get 0:
the first versioned event supersedes them) and the party identity named; profiles gain a
version, the snapshot of their last ProfileChanged and the assessments SearchProfiles reads.

Revision ID: profile_0003
Revises: profile_0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "profile_0003"
down_revision = "profile_0002"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger()
_MONEY = sa.BigInteger()


def _record_key() -> list[sa.Column[str]]:
    return [
        sa.Column("source_system", sa.String(64), primary_key=True),
        sa.Column("source_record_id", sa.String(128), primary_key=True),
    ]


def upgrade() -> None:
    with op.batch_alter_table("profile") as batch:
        batch.add_column(sa.Column("display_name_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("version", _SEQ, nullable=False, server_default="0"))
        batch.add_column(sa.Column("snapshot", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("tier", sa.String(32), nullable=True))
        batch.add_column(sa.Column("value_band", sa.String(32), nullable=True))
        batch.add_column(sa.Column("total_assets_cny_minor", _MONEY, nullable=True))
        batch.add_column(sa.Column("risk_expires_on", sa.Date(), nullable=True))
    op.create_index("ix_profile_tier", "profile", ["tier"])
    op.create_index("ix_profile_risk_expires_on", "profile", ["risk_expires_on"])
    op.create_index("ix_profile_value_band", "profile", ["value_band"])
    op.create_index("ix_profile_total_assets_cny_minor", "profile", ["total_assets_cny_minor"])
    op.create_table(
        "profile_segment",
        sa.Column("segment", sa.String(64), primary_key=True),
        sa.Column("party_id", sa.String(36), primary_key=True),
    )
    with op.batch_alter_table("profile_source_record") as batch:
        batch.add_column(sa.Column("linked_party_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("link_version", _SEQ, nullable=False, server_default="0"))
    op.execute("UPDATE profile_source_record SET linked_party_id = party_id")
    with op.batch_alter_table("profile_source_record") as batch:
        batch.alter_column("linked_party_id", existing_type=sa.String(36), nullable=False)
    op.create_table(
        "account",
        *_record_key(),
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("product_line", sa.String(32), nullable=True),
        sa.Column("product_code", sa.String(64), nullable=False, server_default=""),
        sa.Column("currency", sa.String(3), nullable=False, server_default=""),
        sa.Column("branch_code", sa.String(32), nullable=False, server_default=""),
        sa.Column("attributes_seq", _SEQ, nullable=False, server_default="0"),
        sa.Column("opened_on", sa.Date(), nullable=True),
        sa.Column("closed_on", sa.Date(), nullable=True),
        sa.Column("status_seq", _SEQ, nullable=False, server_default="0"),
        sa.Column("card_tier", sa.SmallInteger(), nullable=True),
        sa.Column("tier_seq", _SEQ, nullable=False, server_default="0"),
        sa.Column("product_risk", sa.SmallInteger(), nullable=True),
        sa.Column("risk_seq", _SEQ, nullable=False, server_default="0"),
        sa.Column("overdue_days", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("overdue_seq", _SEQ, nullable=False, server_default="0"),
    )
    op.create_table(
        "account_balance",
        *_record_key(),
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("currency", sa.String(3), primary_key=True),
        sa.Column("balance_minor", _MONEY, nullable=False),
        sa.Column("seq", _SEQ, nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "balance_history",
        *_record_key(),
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("currency", sa.String(3), primary_key=True),
        sa.Column("seq", _SEQ, primary_key=True),
        sa.Column("balance_minor", _MONEY, nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_balance_history_record_time",
        "balance_history",
        ["source_system", "source_record_id", "changed_at"],
    )
    op.create_table(
        "monthly_activity",
        *_record_key(),
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("month", sa.Date(), primary_key=True),
        sa.Column("currency", sa.String(3), primary_key=True),
        sa.Column("transactions", sa.Integer(), nullable=False),
        sa.Column("debit_minor", _MONEY, nullable=False),
        sa.Column("credit_minor", _MONEY, nullable=False),
        sa.Column("salary_minor", _MONEY, nullable=False),
        sa.Column("card_purchase_minor", _MONEY, nullable=False),
    )
    op.create_table(
        "interaction",
        sa.Column("source_system", sa.String(64), primary_key=True),
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("source_record_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("branch_code", sa.String(32), nullable=False, server_default=""),
        sa.Column("detail", sa.String(64), nullable=False, server_default=""),
    )
    op.create_index(
        "ix_interaction_record_time",
        "interaction",
        ["source_system", "source_record_id", "occurred_at"],
    )
    op.create_table(
        "consent",
        *_record_key(),
        sa.Column("channel", sa.String(16), primary_key=True),
        sa.Column("purpose", sa.String(16), primary_key=True),
        sa.Column("given", sa.Boolean(), nullable=False),
        sa.Column("captured_where", sa.String(100), nullable=False),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text_version", sa.String(32), nullable=False),
        sa.Column("seq", _SEQ, nullable=False),
    )
    op.create_table(
        "preference",
        *_record_key(),
        sa.Column("language", sa.String(35), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("quiet_start", sa.Time(), nullable=True),
        sa.Column("quiet_end", sa.Time(), nullable=True),
        sa.Column("preferred_channel", sa.String(16), nullable=True),
        sa.Column("seq", _SEQ, nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "risk_assessment",
        *_record_key(),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("assessed_on", sa.Date(), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=False),
        sa.Column("seq", _SEQ, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "risk_assessment",
        "preference",
        "consent",
        "interaction",
        "monthly_activity",
        "balance_history",
        "account_balance",
        "account",
        "profile_segment",
    ):
        op.drop_table(table)
    with op.batch_alter_table("profile_source_record") as batch:
        batch.drop_column("link_version")
        batch.drop_column("linked_party_id")
    op.drop_index("ix_profile_risk_expires_on", table_name="profile")
    op.drop_index("ix_profile_total_assets_cny_minor", table_name="profile")
    op.drop_index("ix_profile_value_band", table_name="profile")
    op.drop_index("ix_profile_tier", table_name="profile")
    with op.batch_alter_table("profile") as batch:
        for column in (
            "risk_expires_on",
            "total_assets_cny_minor",
            "value_band",
            "tier",
            "snapshot",
            "version",
            "display_name_at",
        ):
            batch.drop_column(column)
