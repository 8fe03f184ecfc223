"""The newsletters a database serves, by key: each command run with a newsletter's config
records its name, language, description, base URL and whether it sends a welcome, so that
any process (the web pages of another newsletter, a report) names a list by its display
name and language instead of its key. Written only when something changed: a command costs
one read."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from newsletter.config import Config
from newsletter.dates import utc_now
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
        row = session.get(NewsletterRow, config.newsletter_id)
        if row is not None and _values(row) == wanted:
            return
        values = dict(zip(_FIELDS, wanted, strict=True)) | {"updated_at": utc_now()}
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        upsert = dialect.insert(NewsletterRow).values(key=config.newsletter_id, **values)
        upsert = upsert.on_conflict_do_update(
            index_elements=["key"], set_={name: upsert.excluded[name] for name in values}
        )
        session.execute(upsert)
        session.commit()


_FIELDS = ("name", "language", "description", "base_url", "welcome")


def _values(row: NewsletterRow) -> tuple[object, ...]:
    return tuple(getattr(row, name) for name in _FIELDS)


def known(session: Session) -> dict[str, Known]:
    """Every newsletter the database has heard of, by key."""
    return {
        row.key: Known(row.key, *_values(row))  # type: ignore[arg-type]
        for row in session.exec(select(NewsletterRow)).all()
    }
