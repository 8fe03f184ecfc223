"""An index on suppressions.email: a send reads the suppression list for each row it
starts, by the row's normalised address, in the statement that starts it

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_suppressions_email", "suppressions", ["email"])


def downgrade() -> None:
    op.drop_index("ix_suppressions_email", table_name="suppressions")
