"""Identity resolution: candidate index, link evidence, decisions, reviews, party history.

Revision ID: identity_0002
Revises: identity_0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "identity_0002"
down_revision = "identity_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One party per resident ID is now held by advisory locks on blocking keys and the
    # resolver's guardrails, through merges and splits, which this table could not follow.
    op.drop_table("party_key")
    with op.batch_alter_table("party") as batch:
        batch.add_column(sa.Column("retired_into", sa.String(36), nullable=True))
        batch.add_column(sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("source_record") as batch:
        batch.add_column(
            sa.Column("linked_by", sa.String(16), nullable=False, server_default="model")
        )
        batch.add_column(sa.Column("matched_system", sa.String(64), nullable=True))
        batch.add_column(sa.Column("matched_record_id", sa.String(128), nullable=True))
        batch.add_column(sa.Column("match_weight", sa.Float(), nullable=True))
        batch.add_column(
            sa.Column("model_version", sa.String(64), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("steward", sa.String(128), nullable=False, server_default=""))
        batch.add_column(sa.Column("linked_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "blocking_key",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("source_system", sa.String(64), primary_key=True),
        sa.Column("source_record_id", sa.String(128), primary_key=True),
    )
    op.create_index("ix_blocking_key_record", "blocking_key", ["source_system", "source_record_id"])
    op.create_table(
        "link_decision",
        sa.Column("a_system", sa.String(64), primary_key=True),
        sa.Column("a_record_id", sa.String(128), primary_key=True),
        sa.Column("b_system", sa.String(64), primary_key=True),
        sa.Column("b_record_id", sa.String(128), primary_key=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("steward", sa.String(128), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_link_decision_b", "link_decision", ["b_system", "b_record_id"])
    op.create_table(
        "link_review",
        sa.Column("review_id", sa.String(36), primary_key=True),
        sa.Column("a_system", sa.String(64), nullable=False),
        sa.Column("a_record_id", sa.String(128), nullable=False),
        sa.Column("b_system", sa.String(64), nullable=False),
        sa.Column("b_record_id", sa.String(128), nullable=False),
        sa.Column("match_weight", sa.Float(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("steward", sa.String(128), nullable=False, server_default=""),
        sa.UniqueConstraint(
            "a_system", "a_record_id", "b_system", "b_record_id", name="uq_link_review_pair"
        ),
    )
    op.create_index("ix_link_review_status", "link_review", ["status", "created_at"])
    op.create_table(
        "party_history",
        sa.Column(
            "entry_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("party_id", sa.String(36), nullable=False),
        sa.Column("change", sa.String(32), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(16), nullable=False),
        sa.Column("steward", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("other_party_id", sa.String(36), nullable=True),
        sa.Column("source_records", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
    )
    op.create_index("ix_party_history_party_id", "party_history", ["party_id"])


def downgrade() -> None:
    op.drop_index("ix_party_history_party_id", table_name="party_history")
    op.drop_table("party_history")
    op.drop_index("ix_link_review_status", table_name="link_review")
    op.drop_table("link_review")
    op.drop_index("ix_link_decision_b", table_name="link_decision")
    op.drop_table("link_decision")
    op.drop_index("ix_blocking_key_record", table_name="blocking_key")
    op.drop_table("blocking_key")
    with op.batch_alter_table("source_record") as batch:
        for column in (
            "linked_at",
            "steward",
            "model_version",
            "match_weight",
            "matched_record_id",
            "matched_system",
            "linked_by",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("party") as batch:
        batch.drop_column("retired_at")
        batch.drop_column("retired_into")
    op.create_table(
        "party_key",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("value", sa.String(128), primary_key=True),
        sa.Column("party_id", sa.String(36), sa.ForeignKey("party.party_id"), nullable=False),
    )
