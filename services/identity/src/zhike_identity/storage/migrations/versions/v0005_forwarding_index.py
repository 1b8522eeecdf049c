"""An index on the parties a party forwards to, so a split finds the retired ids that lead to
the party it splits without reading every party.

Revision ID: identity_0005
Revises: identity_0004
Create Date: 2026-12-04
"""

from alembic import op

revision = "identity_0005"
down_revision = "identity_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_party_retired_into", "party", ["retired_into"])


def downgrade() -> None:
    op.drop_index("ix_party_retired_into", table_name="party")
