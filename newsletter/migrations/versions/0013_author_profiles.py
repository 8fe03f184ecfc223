"""author_profiles: a reporter's card (role, bio, photo) as the sources give it

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

from newsletter.models import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "author_profiles",
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("bio", sa.Text, nullable=False),
        sa.Column("photo", sa.String(2048)),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("author_profiles")
