"""The article store: one row per canonical URL, updated in place, queried by author and week.

When two sources describe the same article they rarely agree byte for byte: a feed has a
summary where the page has the full body, two feeds carry different GUIDs. Each row is owned
by one source. The owner updates it freely; a source of a richer kind (page > text > feed)
takes ownership; any other source only fills fields that are still empty. So collecting the
feed after the page neither loses the body nor reports a change on every run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from sqlmodel import Session, col, select

from newsletter.collect.article import ArticleData, AuthorProfile
from newsletter.collect.authors import author_key
from newsletter.dates import Period
from newsletter.models import Article, ArticleAuthor, AuthorProfileRow
from newsletter.sanitize import html_to_text
from newsletter.urls import url_key

ArticleChange = Literal["new", "updated", "unchanged"]
_RANK = {"feed": 1, "text": 2, "page": 3}


@dataclass(frozen=True)
class StoredFields:
    title: str
    authors: tuple[str, ...]
    published: datetime
    summary_html: str
    body_html: str
    image: str | None
    image_caption: str
    tags: tuple[str, ...]
    reading_minutes: int
    guid: str | None

    def digest(self) -> str:
        payload = json.dumps(
            [
                self.title,
                self.authors,
                self.published.astimezone(UTC).isoformat(),
                self.summary_html,
                self.body_html,
                self.image,
                self.tags,
                self.reading_minutes,
                self.guid,
                # Only when there is one: rows stored before captions keep their digest.
                *([self.image_caption] if self.image_caption else []),
            ],
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode()).hexdigest()


def _fields(source: Article | ArticleData) -> StoredFields:
    """The compared fields of a stored row or of freshly collected data."""
    authors = source.author_names if isinstance(source, Article) else source.authors
    return StoredFields(
        title=source.title,
        authors=tuple(authors),
        published=source.published,
        summary_html=source.summary_html,
        body_html=source.body_html,
        image=source.image,
        image_caption=source.image_caption,
        tags=tuple(source.tags),
        reading_minutes=source.reading_minutes,
        guid=source.guid,
    )


def takes_over(row: Article, kind: str, source: str) -> bool:
    return row.source == source or _RANK.get(kind, 0) > _RANK.get(row.source_kind, 0)


def merge(old: StoredFields, new: StoredFields, *, new_wins: bool) -> StoredFields:
    """What the row holds after `new` arrives: see the module docstring."""
    # The winner's fields, each filled from the other where the winner has none; the
    # winner's date always, and the reading time of whichever has the body.
    first, second = (new, old) if new_wins else (old, new)
    return StoredFields(
        title=first.title or second.title,
        authors=first.authors or second.authors,
        published=first.published,
        summary_html=first.summary_html or second.summary_html,
        body_html=first.body_html or second.body_html,
        image=first.image or second.image,
        # The caption of whichever image is kept.
        image_caption=first.image_caption if first.image else second.image_caption,
        tags=first.tags or second.tags,
        reading_minutes=first.reading_minutes if first.body_html else second.reading_minutes,
        guid=first.guid or second.guid,
    )


def _apply(row: Article, fields: StoredFields) -> None:
    row.title = fields.title
    row.published = fields.published
    row.summary_html = fields.summary_html
    row.body_html = fields.body_html
    row.image = fields.image
    row.image_caption = fields.image_caption
    row.tags = list(fields.tags)
    row.reading_minutes = fields.reading_minutes
    row.guid = fields.guid
    row.content_hash = fields.digest()
    if tuple(row.author_names) != fields.authors:
        row.authors.clear()
        row.authors.extend(
            ArticleAuthor(position=i, name=name, key=author_key(name))
            for i, name in enumerate(fields.authors)
        )


_Data = TypeVar("_Data", ArticleData, AuthorProfile)


def without_nul(data: _Data) -> _Data:
    """Collected text as both databases take it: a fetched page may carry NUL (`\\u0000`
    in its JSON-LD), which PostgreSQL refuses in text, so the article would be lost."""
    changes: dict[str, Any] = {}
    for item in dataclasses.fields(data):
        value = getattr(data, item.name)
        cleaned = _no_nul(value)
        if cleaned is not value:
            changes[item.name] = cleaned
    return dataclasses.replace(data, **changes) if changes else data


def _no_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, list | tuple):
        items = [_no_nul(item) for item in value]
        if any(new is not old for new, old in zip(items, value, strict=True)):
            return type(value)(items)
    return value


def store(session: Session, data: ArticleData, source: str) -> ArticleChange:
    """Insert or update one article from `source`; the caller's transaction decides when
    it counts."""
    data = without_nul(data)
    key = url_key(data.url)
    if data.profiles:
        store_profiles(session, tuple(without_nul(p) for p in data.profiles))
    row = session.exec(select(Article).where(Article.url_key == key)).first()
    incoming = _fields(data)
    if row is None:
        row = Article(
            url=data.url,
            url_key=key,
            title=data.title,
            published=data.published,
            source=source,
            source_kind=data.kind,
            content_hash="",
        )
        _apply(row, incoming)
        session.add(row)
        session.flush()
        return "new"
    owner = takes_over(row, data.kind, source)
    merged = merge(_fields(row), incoming, new_wins=owner)
    url = data.url if owner else row.url
    if owner:
        row.source, row.source_kind = source, data.kind
    if merged.digest() == row.content_hash and url == row.url:
        return "unchanged"
    row.url = url
    _apply(row, merged)
    row.updated_at = datetime.now(UTC)
    session.flush()
    return "updated"


def store_profiles(session: Session, profiles: tuple[AuthorProfile, ...]) -> None:
    """Keep each reporter's card: what a source says now replaces what it said before,
    field by field; a field it leaves out keeps its old value."""
    now = datetime.now(UTC)
    for profile in profiles:
        key = author_key(profile.name)
        if not key:
            continue
        row = session.get(AuthorProfileRow, key)
        if row is None:
            row = AuthorProfileRow(key=key, name=profile.name)
            session.add(row)
        row.name = profile.name
        row.role = profile.role or row.role
        row.bio = profile.bio or row.bio
        row.photo = profile.photo or row.photo
        row.updated_at = now
    session.flush()


def profiles_of(session: Session, names: list[str]) -> list[AuthorProfileRow]:
    """The cards of these bylines, in their order; names without one are left out."""
    found = []
    for name in names:
        row = session.get(AuthorProfileRow, author_key(name))
        if row is not None and (row.role or row.bio or row.photo):
            found.append(row)
    return found


def find(session: Session, url: str) -> Article | None:
    return session.exec(select(Article).where(Article.url_key == url_key(url))).first()


def query(
    session: Session, *, authors: Sequence[str] = (), period: Period | None = None
) -> Sequence[Article]:
    """Articles in publication order; with `authors`, those by any of them (an article by
    two of them once: EXISTS, not a join)."""
    statement = select(Article)
    if authors:
        keys = sorted({author_key(author) for author in authors})
        statement = statement.where(
            sa.exists().where(
                col(ArticleAuthor.article_id) == col(Article.id), col(ArticleAuthor.key).in_(keys)
            )
        )
    if period:
        statement = statement.where(
            Article.published >= period.start, Article.published < period.end
        )
    statement = statement.order_by(col(Article.published), col(Article.id))
    return session.exec(statement).all()


def to_dict(article: Article, zone: tzinfo) -> dict[str, Any]:
    """The JSON shape of `articles list --json`: times in the newsletter's zone, with offset."""
    return {
        "url": article.url,
        "title": article.title,
        "authors": article.author_names,
        "published": article.published.astimezone(zone).isoformat(),
        "summary": html_to_text(article.summary_html),
        "summary_html": article.summary_html,
        "image": article.image,
        "image_caption": article.image_caption,
        "reading_minutes": article.reading_minutes,
        "tags": list(article.tags),
        "guid": article.guid,
    }


def to_detail(article: Article, zone: tzinfo) -> dict[str, Any]:
    """`articles show --json`: the list shape plus the body and bookkeeping."""
    return to_dict(article, zone) | {
        "body_html": article.body_html,
        "source": article.source,
        "source_kind": article.source_kind,
        "first_seen": article.first_seen.astimezone(zone).isoformat(),
        "updated_at": article.updated_at.astimezone(zone).isoformat(),
    }
