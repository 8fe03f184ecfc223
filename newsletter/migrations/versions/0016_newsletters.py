"""newsletters: the registry of the newsletters a database serves, by their stable key

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

from newsletter.models import UTCDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "newsletters",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("language", sa.String(20), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("base_url", sa.String(500), nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("newsletters")
