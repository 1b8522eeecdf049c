"""Identity tables. Private to storage/: the domain never sees rows."""

from __future__ import annotations

import sqlalchemy as sa

from zhike_runtime.crypto import EncryptedColumns

metadata = sa.MetaData()

party = sa.Table(
    "party",
    metadata,
    sa.Column("party_id", sa.String(36), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # A merged party forwards to its survivor; its id keeps that meaning for ever.
    sa.Column("retired_into", sa.String(36), nullable=True),
    sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
    # One more with every change of where a retired id leads (identity_0006), told to consumers
    # in PartiesMerged and PartyForwardingEnded so they keep the latest whatever the order.
    sa.Column("forwarding_version", sa.BigInteger(), nullable=False, server_default="0"),
    # The retired ids that lead to a party, which a split of it re-routes (identity_0005).
    sa.Index("ix_party_retired_into", "retired_into"),
)

source_record = sa.Table(
    "source_record",
    metadata,
    sa.Column("source_system", sa.String(64), primary_key=True),
    sa.Column("source_record_id", sa.String(128), primary_key=True),
    sa.Column(
        "party_id", sa.String(36), sa.ForeignKey("party.party_id"), nullable=False, index=True
    ),
    sa.Column("full_name", sa.String(200), nullable=False),
    sa.Column("id_type", sa.SmallInteger(), nullable=True),
    # Sealed (zhike_runtime.crypto, see ENCRYPTED_COLUMNS): ciphertext tokens, "" when absent.
    sa.Column("id_number", sa.Text(), nullable=False),
    sa.Column("phone", sa.Text(), nullable=False),
    sa.Column("email", sa.Text(), nullable=False),
    sa.Column("birth_date", sa.Date(), nullable=True),
    sa.Column("gender", sa.SmallInteger(), nullable=True),
    sa.Column("address", sa.String(500), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # Why the record is in its party (see LinkEvidence).
    sa.Column("linked_by", sa.String(16), nullable=False, server_default="model"),
    sa.Column("matched_system", sa.String(64), nullable=True),
    sa.Column("matched_record_id", sa.String(128), nullable=True),
    sa.Column("match_weight", sa.Float(), nullable=True),
    sa.Column("model_version", sa.String(64), nullable=False, server_default=""),
    sa.Column("steward", sa.String(128), nullable=False, server_default=""),
    sa.Column("linked_at", sa.DateTime(timezone=True), nullable=True),
    # One more with every change of the record's party; events carry it (consumers order by it).
    sa.Column("link_version", sa.BigInteger(), nullable=False, server_default="1"),
)

# The candidate index: every blocking key of every record, as a blind index (its two-letter
# prefix such as "id:" in clear, the rest a keyed hash: storage/protection.py).
blocking_key = sa.Table(
    "blocking_key",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("source_system", sa.String(64), primary_key=True),
    sa.Column("source_record_id", sa.String(128), primary_key=True),
    sa.Index("ix_blocking_key_record", "source_system", "source_record_id"),
)

link_decision = sa.Table(
    "link_decision",
    metadata,
    # The pair is stored in canonical order (a < b) so each pair has one row.
    sa.Column("a_system", sa.String(64), primary_key=True),
    sa.Column("a_record_id", sa.String(128), primary_key=True),
    sa.Column("b_system", sa.String(64), primary_key=True),
    sa.Column("b_record_id", sa.String(128), primary_key=True),
    sa.Column("decision", sa.String(16), nullable=False),  # never | always
    sa.Column("steward", sa.String(128), nullable=False),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_link_decision_b", "b_system", "b_record_id"),
)

link_review = sa.Table(
    "link_review",
    metadata,
    sa.Column("review_id", sa.String(36), primary_key=True),
    sa.Column("a_system", sa.String(64), nullable=False),
    sa.Column("a_record_id", sa.String(128), nullable=False),
    sa.Column("b_system", sa.String(64), nullable=False),
    sa.Column("b_record_id", sa.String(128), nullable=False),
    sa.Column("match_weight", sa.Float(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # open | linked | kept_apart
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("steward", sa.String(128), nullable=False, server_default=""),
    sa.UniqueConstraint(
        "a_system", "a_record_id", "b_system", "b_record_id", name="uq_link_review_pair"
    ),
    sa.Index("ix_link_review_status", "status", "created_at"),
)

party_history = sa.Table(
    "party_history",
    metadata,
    sa.Column(
        "entry_id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("party_id", sa.String(36), nullable=False, index=True),
    sa.Column("change", sa.String(32), nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("decided_by", sa.String(16), nullable=False),
    sa.Column("steward", sa.String(128), nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("other_party_id", sa.String(36), nullable=True),
    sa.Column("source_records", sa.JSON(), nullable=False),
    sa.Column("reason", sa.String(500), nullable=False),
)

# The personal data sealed at rest, each value bound to its column and record: the repository
# seals and opens them, `zhike rotate-keys --service identity` re-seals them (entry point
# `zhike.encrypted_columns`).
SOURCE_RECORD_SEALED = EncryptedColumns(
    "source_record", ("source_system", "source_record_id"), ("id_number", "phone", "email")
)
ENCRYPTED_COLUMNS = (SOURCE_RECORD_SEALED,)
