"""What every collector returns: one article, already canonical and sanitised."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class ArticleData:
    url: str
    title: str
    authors: list[str]
    published: datetime
    kind: str
    summary_html: str = ""
    body_html: str = ""
    image: str | None = None
    tags: list[str] = field(default_factory=list)
    reading_minutes: int = 1
    guid: str | None = None
