"""deliveries.provider_id: an HTTP API provider's id for the message it accepted, which its
webhooks name

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("provider_id", sa.String(200)))
        batch.create_index("ix_deliveries_provider_id", ["provider_id"])


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_provider_id")
        batch.drop_column("provider_id")
