"""articles, their authors and HTTP validators

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from newsletter.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "articles",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("url_key", sa.String(2048), nullable=False, unique=True),
        sa.Column("guid", sa.String(2048)),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("summary_html", sa.Text, nullable=False),
        sa.Column("body_html", sa.Text, nullable=False),
        sa.Column("image", sa.String(2048)),
        sa.Column("published", UTCDateTime, nullable=False),
        sa.Column("reading_minutes", sa.Integer, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("source", sa.String(2048), nullable=False),
        sa.Column("source_kind", sa.String(16), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("first_seen", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_articles_published", "articles", ["published"])
    op.create_table(
        "article_authors",
        sa.Column(
            "article_id",
            sa.Integer,
            sa.ForeignKey("articles.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("key", sa.String(300), nullable=False),
    )
    op.create_index("ix_article_authors_key", "article_authors", ["key"])
    op.create_table(
        "fetch_state",
        sa.Column("location", sa.String(2048), primary_key=True),
        sa.Column("etag", sa.String(1024)),
        sa.Column("last_modified", sa.String(128)),
        sa.Column("checked_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("fetch_state")
    op.drop_table("article_authors")
    op.drop_table("articles")
