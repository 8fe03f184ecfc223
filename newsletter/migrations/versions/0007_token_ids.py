"""subscribers.token_id: signed links name a random id that is never reused

A row id is reused on SQLite (a deleted person's id goes to the next sign-up), so links
that named it could act on someone else. Existing people get a random token id and keep
`legacy_tokens`, under which the unsubscribe links already sent to them (naming their row
id) still work; people created from now on have no such links.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("token_id", sa.String(40)))
        batch.add_column(
            sa.Column("legacy_tokens", sa.Boolean, nullable=False, server_default=sa.false())
        )
    # A letter first, so a token id is never all digits (those are row ids); the rest from
    # each database's own secure random source.
    if op.get_bind().dialect.name == "postgresql":
        random_id = "'t' || replace(gen_random_uuid()::text, '-', '')"
    else:
        random_id = "'t' || lower(hex(randomblob(16)))"
    op.execute(f"UPDATE subscribers SET token_id = {random_id}, legacy_tokens = true")
    with op.batch_alter_table("subscribers") as batch:
        batch.alter_column("token_id", existing_type=sa.String(40), nullable=False)
        batch.create_unique_constraint("uq_subscribers_token_id", ["token_id"])


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_constraint("uq_subscribers_token_id", type_="unique")
        batch.drop_column("legacy_tokens")
        batch.drop_column("token_id")
