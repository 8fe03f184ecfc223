"""issues: a slug is unique within its newsletter (several newsletters on one database each
have a 2022-W51), `kind` tells an issue from a newsletter's welcome row, and `outline` keeps
an approved issue's lead and headlines for the welcome mail; newsletters.welcome says whether
a newsletter greets its new readers

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# SQLite reflects the inline UNIQUE (slug) of 0002 without a name: the convention names it
# so the batch copy can leave it out. PostgreSQL named it issues_slug_key.
_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _old_unique() -> str:
    return "issues_slug_key" if op.get_bind().dialect.name == "postgresql" else "uq_issues_slug"


def upgrade() -> None:
    with op.batch_alter_table("issues", naming_convention=_NAMES) as batch:
        batch.drop_constraint(_old_unique(), type_="unique")
        batch.create_unique_constraint("uq_issues_newsletter_slug", ["newsletter", "slug"])
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="issue"))
        batch.add_column(sa.Column("outline", sa.JSON))
    with op.batch_alter_table("newsletters") as batch:
        batch.add_column(sa.Column("welcome", sa.Boolean, nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("newsletters") as batch:
        batch.drop_column("welcome")
    with op.batch_alter_table("issues", naming_convention=_NAMES) as batch:
        batch.drop_column("outline")
        batch.drop_column("kind")
        batch.drop_constraint("uq_issues_newsletter_slug", type_="unique")
        batch.create_unique_constraint(_old_unique(), ["slug"])
