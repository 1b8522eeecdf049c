"""Profiles keep the golden record's birth date, so that segment rules can read the age.

Nullable: a party's birth date arrives with identity's next GoldenRecordChanged for it (under the
same version as the name, `display_name_at`); until then its age is unknown.

Revision ID: profile_0004
Revises: profile_0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "profile_0004"
down_revision = "profile_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("profile") as batch:
        batch.add_column(sa.Column("birth_date", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("profile") as batch:
        batch.drop_column("birth_date")
