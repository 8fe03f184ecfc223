"""the claim's index: (issue_id, state, id), so rows come in id order without a sort

On PostgreSQL, (issue_id, state) left the claim's ORDER BY id to a scan of the primary key
that filtered out every row of earlier issues (35 ms a claim after one 300,000-row issue,
and growing with each issue sent). SQLite's index carried the rowid already; the new index
is the same there.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_claim", "deliveries", ["issue_id", "state", "id"])
    op.drop_index("ix_deliveries_issue_state", table_name="deliveries")


def downgrade() -> None:
    op.create_index("ix_deliveries_issue_state", "deliveries", ["issue_id", "state"])
    op.drop_index("ix_deliveries_claim", table_name="deliveries")
