"""The newsletters a database serves, by key: each command run with a newsletter's config
records its name, language, description, base URL and whether it sends a welcome, so that
any process (the web pages of another newsletter, a report) names a list by its display
name and language instead of its key. Written only when something changed: a command costs
one read."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from newsletter.config import Config
from newsletter.dates import utc_now
from newsletter.db import Cursor
from newsletter.models import NewsletterRow


@dataclass(frozen=True)
class Known:
    key: str
    name: str
    language: str
    description: str | None
    base_url: str
    welcome: bool = True


def record(engine: Engine, config: Config) -> None:
    """This newsletter as its config says now. Commits (its own short transaction); two
    commands starting at once both write the same row, one after the other (an upsert:
    neither fails)."""
    wanted = (
        config.name,
        config.language,
        config.description,
        config.base_url,
        config.welcome.enabled,
    )
    with Session(engine) as session:
        row = session.get(NewsletterRow, config.key)
        if row is not None and _values(row) == wanted:
            return
        cursor = Cursor.of(session)
        cursor.count(
            "INSERT INTO newsletters (key, name, language, description, base_url, welcome,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
            " name = excluded.name, language = excluded.language,"
            " description = excluded.description, base_url = excluded.base_url,"
            " welcome = excluded.welcome, updated_at = excluded.updated_at",
            config.key,
            *wanted,
            cursor.stamp(utc_now()),
        )
        session.commit()


def _values(row: NewsletterRow) -> tuple[object, ...]:
    return (row.name, row.language, row.description, row.base_url, row.welcome)


def known(session: Session) -> dict[str, Known]:
    """Every newsletter the database has heard of, by key."""
    return {
        row.key: Known(row.key, *_values(row))  # type: ignore[arg-type]
        for row in session.exec(select(NewsletterRow)).all()
    }
