"""approvals: each request for sign-off (per approver, bound to the issue's content hash)
and each decision, by link or from the CLI; issues.approved_by and sent_by

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

from newsletter.models import UTCDateTime

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("newsletter", sa.String(300), nullable=False),
        sa.Column("slug", sa.String(100), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(10), nullable=False),
        sa.Column("requested_by", sa.String(400), nullable=False),
        sa.Column("requested_at", UTCDateTime, nullable=False),
        sa.Column("approver", sa.String(400), nullable=False),
        sa.Column("send_at", UTCDateTime),
        sa.Column("expires_at", UTCDateTime),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("html", sa.Text, nullable=False),
        sa.Column("decision", sa.String(20)),
        sa.Column("decided_at", UTCDateTime),
        sa.Column("comment", sa.Text),
        sa.Column("client_address", sa.String(100)),
    )
    op.create_index("ix_approvals_issue", "approvals", ["newsletter", "slug"])
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("approved_by", sa.String(400)))
        batch.add_column(sa.Column("sent_by", sa.String(400)))


def downgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("sent_by")
        batch.drop_column("approved_by")
    op.drop_index("ix_approvals_issue", "approvals")
    op.drop_table("approvals")
