"""Creating a newsletter project: the starter config and its database."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from newsletter import languages
from newsletter.atomic_files import atomic_write
from newsletter.audience.tokens import create_key_file
from newsletter.config import (
    check_base_url,
    check_sender,
    check_timezone,
    load_config,
    starter_config,
)
from newsletter.db import display_url, open_database
from newsletter.errors import ConfigError, UsageError
from newsletter.untrusted import has_control


@dataclass(frozen=True)
class Created:
    config: Path
    database_url: str


def init_project(
    config_file: Path,
    *,
    name: str,
    timezone: str,
    sender: str,
    base_url: str,
    postal_address: str | None = None,
    language: str = languages.SOURCE,
    force: bool = False,
) -> Created:
    """Validate everything first, then write: a bad --timezone leaves no half-made project."""
    check_timezone(timezone)
    try:
        chosen = languages.check_language(language)
        languages.require(chosen)
    except ConfigError as error:
        raise UsageError(f"--language: {error}") from None
    check_sender(sender)
    check_base_url(base_url)
    if not name.strip():
        raise UsageError("--name is empty: give the newsletter's name, e.g. --name 'War Notes'")
    if config_file.exists() and not force:
        raise UsageError(f"{config_file} already exists: edit it, or pass --force to replace it")
    config_file.parent.mkdir(parents=True, exist_ok=True)
    if postal_address is not None and (not postal_address.strip() or has_control(postal_address)):
        raise UsageError("--postal-address is empty or has line breaks: give it on one line")
    text = starter_config(
        name=name.strip(),
        timezone=timezone,
        sender=sender,
        base_url=base_url,
        postal_address=postal_address.strip() if postal_address else None,
        language=chosen,
    )
    atomic_write(config_file, text)
    config = load_config(config_file)
    open_database(config.database_url)
    create_key_file(config.signing_key_file)
    return Created(config=config_file, database_url=display_url(config.database_url))
