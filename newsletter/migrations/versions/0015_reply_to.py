"""issues.reply_to: where replies to one issue go, frozen with its approval

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("reply_to", sa.String(400)))


def downgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("reply_to")
