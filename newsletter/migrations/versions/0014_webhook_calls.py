"""webhook_calls: each provider call's token or message id, spent the first time it is seen

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

from newsletter.models import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_calls",
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("seen_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_webhook_calls_seen", "webhook_calls", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_calls_seen", "webhook_calls")
    op.drop_table("webhook_calls")
