"""run_locks.heartbeat_at is taken_at: it is written once, when the lock is taken, and no
heartbeat ever updates it (takeover goes by the holder's pid)

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run_locks") as batch:
        batch.alter_column("heartbeat_at", new_column_name="taken_at")


def downgrade() -> None:
    with op.batch_alter_table("run_locks") as batch:
        batch.alter_column("taken_at", new_column_name="heartbeat_at")
