"""Profiles keep their read model: the facts and assessment their last change assessed, which
GetProfile serves while they are as of today (zhike_profile.domain.read_model).

Nullable: a party gets one with its next change; until then GetProfile assesses it afresh.

Revision ID: profile_0005
Revises: profile_0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "profile_0005"
down_revision = "profile_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("profile") as batch:
        batch.add_column(sa.Column("view", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("profile") as batch:
        batch.drop_column("view")
