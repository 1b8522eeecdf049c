"""Where a retired party leads follows identity's latest forwarding: a split may re-route a
retired id, or end its forwarding (forwarding_ended), told by a later ProfileChanged. Contacts
keep the party they were recorded for (recorded_party_id), so a re-routed id takes its own
contacts along; one recorded before this migration has none until its next move, which takes
the party it is moved from (so contacts merged into a survivor before stay with it). An
index on party.merged_into finds the ids that lead through a party.

Revision ID: offers_0006
Revises: offers_0005
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "offers_0006"
down_revision = "offers_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("party") as batch:
        batch.add_column(
            sa.Column("forwarding_ended", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_index("ix_party_merged_into", "party", ["merged_into"])
    op.add_column("contact_event", sa.Column("recorded_party_id", sa.String(36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contact_event") as batch:
        batch.drop_column("recorded_party_id")
    op.drop_index("ix_party_merged_into", table_name="party")
    with op.batch_alter_table("party") as batch:
        batch.drop_column("forwarding_ended")
