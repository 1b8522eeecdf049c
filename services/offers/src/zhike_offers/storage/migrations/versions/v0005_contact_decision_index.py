"""An index on the decision a contact answers, so a response finds the earlier responses of its
kind to the same decision (only the first teaches the propensity model).

Revision ID: offers_0005
Revises: offers_0004
Create Date: 2026-12-04
"""

from alembic import op

revision = "offers_0005"
down_revision = "offers_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_contact_event_decision", "contact_event", ["decision_id", "kind"])


def downgrade() -> None:
    op.drop_index("ix_contact_event_decision", table_name="contact_event")
