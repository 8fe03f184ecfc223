"""In-memory issues for render and check tests: no database, fixed content."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from newsletter.collect.authors import author_key
from newsletter.config import Config, load_config
from newsletter.editorial.issue_file import IssueArticle, IssueFile
from newsletter.models import Article, ArticleAuthor
from newsletter.urls import url_key


def make_config(folder: Path, extra: str = "", newsletter_extra: str = "") -> Config:
    path = folder / "newsletter.toml"
    path.write_text(
        '[newsletter]\nname = "War Notes"\ntimezone = "Europe/Kyiv"\n'
        'from = "War Notes <notes@example.org>"\nbase_url = "https://news.example.org"\n'
        'postal_address = "1 Example Street, Kyiv, Ukraine"\n' + newsletter_extra + extra
    )
    return load_config(path)


def make_article(
    slug: str, title: str, authors: list[str], day: int, *, image: bool = True,
    summary: str = "<p>A summary with <a href=\"https://e.org/ref\">a link</a>.</p>",
) -> Article:  # fmt: skip
    url = f"https://kyivindependent.com/{slug}/"
    article = Article(
        url=url,
        url_key=url_key(url),
        title=title,
        summary_html=summary,
        body_html="<p>Body.</p>",
        image=f"https://kyivindependent.com/images/{slug}.jpg" if image else None,
        published=datetime(2022, 12, day, 10, 0, tzinfo=UTC),
        reading_minutes=4,
        tags=[],
        source="test",
        source_kind="page",
        content_hash="",
    )
    article.authors = [
        ArticleAuthor(position=i, name=name, key=author_key(name)) for i, name in enumerate(authors)
    ]
    return article


def sample_issue(folder: Path) -> tuple[IssueFile, list[Article]]:
    articles = [
        make_article("bakhmut", "Front-line diary: three days in Bakhmut", ["Asami Terajima"], 20),
        make_article(
            "grid", "Engineers race to repair the grid", ["Asami Terajima", "Martin Fornusek"], 19
        ),
        make_article(
            "notes", "War Notes: the week the front froze", ["Asami Terajima"], 24, image=False
        ),
    ]
    issue = IssueFile.build(
        folder / "issues" / "2022-W51.md",
        [
            IssueArticle(articles[0].url, note="Read this *first*."),
            IssueArticle(articles[1].url),
            IssueArticle(articles[2].url, section="Notebook"),
        ],
        newsletter="War Notes",
        slug="2022-W51",
        subject="War Notes: 19–25 December 2022",
        preheader="This week: Bakhmut and more",
        author="Asami Terajima",
        week="2022-W51",
        intro="Dear readers,\n\nThis week [the front](https://kyivindependent.com/front/) froze.",
    )
    return issue, articles


SNAPSHOTS = Path(__file__).parent / "snapshots"


def assert_snapshot(name: str, content: str) -> None:
    """Golden files guard the theme: a change to them must be a deliberate one
    (UPDATE_SNAPSHOTS=1 rewrites them; review the diff)."""
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS"):
        path.write_text(content)
    assert content == path.read_text(), f"{name} changed; rerun with UPDATE_SNAPSHOTS=1 if meant"
