from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

profile = sa.Table(
    "profile",
    metadata,
    sa.Column("party_id", sa.String(36), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # Set when identity merged this party into another: reads forward there.
    sa.Column("merged_into", sa.String(36), nullable=True),
    sa.Column("display_name", sa.String(200), nullable=False, server_default=""),
)

# A source record belongs to one party at a time: its key is the primary key.
profile_source_record = sa.Table(
    "profile_source_record",
    metadata,
    sa.Column("source_system", sa.String(64), primary_key=True),
    sa.Column("source_record_id", sa.String(128), primary_key=True),
    sa.Column(
        "party_id", sa.String(36), sa.ForeignKey("profile.party_id"), nullable=False, index=True
    ),
    sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
)
