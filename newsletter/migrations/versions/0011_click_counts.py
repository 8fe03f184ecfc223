"""issue_links, click_counts and reader_clicks: counted links and opens (delivery/tracking.py,
web/clicks.py)

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

from newsletter.models import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "issue_links",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "issue_id", sa.Integer, sa.ForeignKey("issues.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("index", sa.Integer, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.UniqueConstraint("issue_id", "index"),
    )
    op.create_table(
        "click_counts",
        sa.Column(
            "issue_id", sa.Integer, sa.ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("index", sa.Integer, primary_key=True),
        sa.Column("hour", UTCDateTime, primary_key=True),
        sa.Column("machine", sa.Boolean, primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_table(
        "reader_clicks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "issue_id", sa.Integer, sa.ForeignKey("issues.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("index", sa.Integer, nullable=False),
        sa.Column(
            "subscriber_id",
            sa.Integer,
            sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("clicked_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_reader_clicks_issue", "reader_clicks", ["issue_id", "index"])
    op.create_index("ix_reader_clicks_subscriber_id", "reader_clicks", ["subscriber_id"])


def downgrade() -> None:
    op.drop_table("reader_clicks")
    op.drop_table("click_counts")
    op.drop_table("issue_links")
