"""the delivery ledger and run locks

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from newsletter.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("enqueued_at", UTCDateTime))
        batch.add_column(sa.Column("finished_at", UTCDateTime))
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "issue_id", sa.Integer, sa.ForeignKey("issues.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="SET NULL")
        ),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("name", sa.String(300)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime),
        sa.Column("last_code", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("sent_at", UTCDateTime),
        sa.UniqueConstraint("issue_id", "email_key"),
    )
    op.create_index("ix_deliveries_issue_state", "deliveries", ["issue_id", "state"])
    op.create_table(
        "run_locks",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("heartbeat_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("run_locks")
    op.drop_table("deliveries")
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("finished_at")
        batch.drop_column("enqueued_at")
