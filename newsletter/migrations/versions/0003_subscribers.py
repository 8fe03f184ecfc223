"""subscribers, subscriptions, suppressions

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from newsletter.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False, unique=True),
        sa.Column("name", sa.String(300)),
        sa.Column("source", sa.String(50), nullable=False),
        sa.Column("attributes", sa.JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "subscriber_id",
            sa.Integer,
            sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("newsletter", sa.String(300), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("confirmed_at", UTCDateTime),
        sa.Column("unsubscribed_at", UTCDateTime),
        sa.UniqueConstraint("subscriber_id", "newsletter"),
    )
    op.create_index("ix_subscriptions_status", "subscriptions", ["status"])
    op.create_table(
        "suppressions",
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column("email", sa.String(320)),
        sa.Column("reason", sa.String(50), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("suppressions")
    op.drop_table("subscriptions")
    op.drop_table("subscribers")
