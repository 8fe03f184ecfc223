"""What every collector returns: one article, already canonical and sanitised."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class AuthorProfile:
    """What a source says about a byline's person: the reporter's card (role, a short bio,
    a photo), for the issue's "from the reporter" block."""

    name: str
    role: str = ""
    bio: str = ""
    photo: str | None = None


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
    # What the picture shows, in the source's words (its caption), for the alt text.
    image_caption: str = ""
    profiles: tuple[AuthorProfile, ...] = ()
    tags: list[str] = field(default_factory=list)
    reading_minutes: int = 1
    guid: str | None = None
