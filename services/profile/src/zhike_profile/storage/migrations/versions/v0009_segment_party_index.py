"""An index on profile_segment.party_id: each profile change replaces its party's segments
(DELETE … WHERE party_id = ANY(…)), and each SearchProfiles page reads its parties' segments,
both by party id, which the primary key (segment, party_id) cannot serve: every one of them
scanned the whole table (18 ms at 133,000 rows, seconds at a bank's size).

On PostgreSQL, the index build blocks writes to profile_segment (and so the profile's event
consumers) until the upgrade commits.

Revision ID: profile_0009
Revises: profile_0008
Create Date: 2026-12-05
"""

from alembic import op

revision = "profile_0009"
down_revision = "profile_0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_profile_segment_party_id", "profile_segment", ["party_id"])


def downgrade() -> None:
    op.drop_index("ix_profile_segment_party_id", table_name="profile_segment")
