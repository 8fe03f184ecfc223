"""feedback_reports: bounces, complaints, mailto unsubscribes and unreadable returned mail,
one row per report (feedback/policy.py)

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from newsletter.models import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback_reports",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("origin", sa.String(20), nullable=False),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20)),
        sa.Column("recipient", sa.String(320)),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("diagnostic", sa.Text),
        sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id", ondelete="SET NULL")),
        sa.Column("delivery_id", sa.Integer, sa.ForeignKey("deliveries.id", ondelete="SET NULL")),
        sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="CASCADE")),
        sa.Column("raw", sa.LargeBinary),
    )
    op.create_index("ix_feedback_reports_subscriber", "feedback_reports", ["subscriber_id", "kind"])
    op.create_index("ix_feedback_reports_received", "feedback_reports", ["received_at"])


def downgrade() -> None:
    op.drop_table("feedback_reports")
