"""A link version per source record: one more with every change of the record's party, carried
by SourceRecordLinked, SourceRecordMoved and PartySplit so that consumers (the profile) keep a
record's latest link whatever order its events arrive in. Existing records start at 1.

Revision ID: identity_0004
Revises: identity_0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "identity_0004"
down_revision = "identity_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN with a constant default: no table rewrite on either engine.
    op.add_column(
        "source_record",
        sa.Column("link_version", sa.BigInteger(), nullable=False, server_default="1"),
    )


def downgrade() -> None:
    with op.batch_alter_table("source_record") as batch:
        batch.drop_column("link_version")
