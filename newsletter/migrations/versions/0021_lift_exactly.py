"""subscriptions.closed_from: the status a close (unsubscribe, bounce, complaint) moved a
subscription from, so that lifting a suppression restores exactly what it closed (a pending
sign-up stays pending); suppression_lifts.key_hash, with the address nullable, so that an
erasure leaves no address in clear in the lifts either

Revision ID: 0021
Revises: 0020
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("closed_from", sa.String(20)))
    with op.batch_alter_table("suppression_lifts") as batch:
        batch.add_column(sa.Column("key_hash", sa.String(64)))
        batch.alter_column("email", existing_type=sa.String(320), nullable=True)
    connection = op.get_bind()
    lifts = sa.table(
        "suppression_lifts", sa.column("id"), sa.column("email"), sa.column("key_hash")
    )
    for row_id, email in connection.execute(sa.select(lifts.c.id, lifts.c.email)).all():
        digest = hashlib.sha256(email.encode("utf-8")).hexdigest()
        connection.execute(lifts.update().where(lifts.c.id == row_id).values(key_hash=digest))
    with op.batch_alter_table("suppression_lifts") as batch:
        batch.alter_column("key_hash", existing_type=sa.String(64), nullable=False)
        batch.create_index("ix_suppression_lifts_key_hash", ["key_hash"])


def downgrade() -> None:
    connection = op.get_bind()
    connection.execute(sa.text("DELETE FROM suppression_lifts WHERE email IS NULL"))
    with op.batch_alter_table("suppression_lifts") as batch:
        batch.drop_index("ix_suppression_lifts_key_hash")
        batch.drop_column("key_hash")
        batch.alter_column("email", existing_type=sa.String(320), nullable=False)
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("closed_from")
