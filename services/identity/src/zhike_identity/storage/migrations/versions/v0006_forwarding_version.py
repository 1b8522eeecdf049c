"""A forwarding version per party: one more with every change of where a retired id leads (a
merge, a re-route after a split, an end), carried by PartiesMerged and PartyForwardingEnded so
that consumers keep the latest forwarding whatever order its events arrive in. Parties retired
before it start at 1.

Revision ID: identity_0006
Revises: identity_0005
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "identity_0006"
down_revision = "identity_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "party",
        sa.Column("forwarding_version", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.execute("UPDATE party SET forwarding_version = 1 WHERE retired_into IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("party") as batch:
        batch.drop_column("forwarding_version")
