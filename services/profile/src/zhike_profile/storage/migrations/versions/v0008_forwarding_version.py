"""Identity's forwarding version per party, so a retired id that a split re-routes (or whose
forwarding it ends: forwarding_ended) follows the latest forwarding whatever order the events
arrive in; and an index on merged_into, to find the ids that lead through a party. Parties
merged before it keep version 0: the first forwarding they were told, which any versioned
change replaces.

Revision ID: profile_0008
Revises: profile_0007
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "profile_0008"
down_revision = "profile_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("profile") as batch:
        batch.add_column(
            sa.Column("forwarding_version", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("forwarding_ended", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_index("ix_profile_merged_into", "profile", ["merged_into"])


def downgrade() -> None:
    op.drop_index("ix_profile_merged_into", table_name="profile")
    with op.batch_alter_table("profile") as batch:
        batch.drop_column("forwarding_ended")
        batch.drop_column("forwarding_version")
