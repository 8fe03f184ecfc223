"""suppression_lifts: each bounce or complaint suppression an operator (or a reprocess with
better rules) lifted: who, when, why

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

from newsletter.models import UTCDateTime

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "suppression_lifts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, index=True),
        sa.Column("reason", sa.String(50), nullable=False),
        sa.Column("suppressed_at", UTCDateTime, nullable=False),
        sa.Column("lifted_at", UTCDateTime, nullable=False),
        sa.Column("lifted_by", sa.String(400), nullable=False),
        sa.Column("why", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("suppression_lifts")
