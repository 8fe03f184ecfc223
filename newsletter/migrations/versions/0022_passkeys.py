"""passkeys: approvers' WebAuthn credentials (and their pending one-time enrolment links);
approvals.proof: how a link decision proved its approver ("link" or "passkey")

Revision ID: 0022
Revises: 0021
"""

import sqlalchemy as sa
from alembic import op

from newsletter.models import UTCDateTime

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "passkeys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("rp_id", sa.String(253), nullable=False),
        sa.Column("approver", sa.String(320), nullable=False),
        sa.Column("requested_by", sa.String(400), nullable=False),
        sa.Column("requested_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("credential_id", sa.String(1400), unique=True),
        sa.Column("public_key", sa.Text),
        sa.Column("sign_count", sa.BigInteger, nullable=False),
        sa.Column("registered_at", UTCDateTime),
        sa.Column("last_used_at", UTCDateTime),
    )
    op.create_index("ix_passkeys_approver", "passkeys", ["rp_id", "approver"])
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("proof", sa.String(10)))
    op.execute(
        "UPDATE approvals SET proof = 'link' WHERE channel = 'link' AND decision IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("proof")
    op.drop_index("ix_passkeys_approver", "passkeys")
    op.drop_table("passkeys")
