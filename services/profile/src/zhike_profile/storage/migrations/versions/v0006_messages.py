"""The contact history keeps the messages notifications sends: their channel, template, and the
offer and decision they delivered (empty for the source systems' interactions).

Revision ID: profile_0006
Revises: profile_0005
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "profile_0006"
down_revision = "profile_0005"
branch_labels = None
depends_on = None

_COLUMNS = (("channel", 16), ("template_id", 64), ("offer_id", 64), ("decision_id", 64))


def upgrade() -> None:
    with op.batch_alter_table("interaction") as batch:
        for name, length in _COLUMNS:
            batch.add_column(sa.Column(name, sa.String(length), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("interaction") as batch:
        for name, _length in reversed(_COLUMNS):
            batch.drop_column(name)
