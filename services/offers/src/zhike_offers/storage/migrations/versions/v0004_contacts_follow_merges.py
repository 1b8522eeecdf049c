"""Offers: the contacts of a party merged away become its survivor's (one person, one contact
history), for merges offers applied before it moved them itself; a chain of merges is followed
to its end.

Revision ID: offers_0004
Revises: offers_0003
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "offers_0004"
down_revision = "offers_0003"
branch_labels = None
depends_on = None

# Each statement moves the contacts one merge along; a chain longer than this is corrupt data
# (the service refuses to follow more than 32 forwards).
_MAX_FORWARDS = 32

_ONE_HOP = sa.text(
    "UPDATE contact_event SET party_id = "
    "(SELECT p.merged_into FROM party p WHERE p.party_id = contact_event.party_id) "
    "WHERE party_id IN (SELECT party_id FROM party WHERE merged_into IS NOT NULL)"
)


def upgrade() -> None:
    connection = op.get_bind()
    for _ in range(_MAX_FORWARDS):
        if not connection.execute(_ONE_HOP).rowcount:
            return
    raise RuntimeError("party forwarding chains longer than 32 merges: corrupt merge data")


def downgrade() -> None:
    """Where each contact was recorded is not kept: the contacts stay with the survivors."""
