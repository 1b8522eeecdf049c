"""Identity tables. Private to storage/: the domain never sees rows."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

party = sa.Table(
    "party",
    metadata,
    sa.Column("party_id", sa.String(36), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Identifiers that prove identity on their own; the primary key makes "one party per key" hold
# even when two replicas link matching records at the same moment.
party_key = sa.Table(
    "party_key",
    metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("value", sa.String(128), primary_key=True),
    sa.Column("party_id", sa.String(36), sa.ForeignKey("party.party_id"), nullable=False),
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
    sa.Column("id_number", sa.String(64), nullable=False),
    sa.Column("phone", sa.String(32), nullable=False),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("birth_date", sa.Date(), nullable=True),
    sa.Column("gender", sa.SmallInteger(), nullable=True),
    sa.Column("address", sa.String(500), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
