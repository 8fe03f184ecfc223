"""Engine, sessions and migrations.

Migrations run on start: a user who upgrades the package and runs any command gets the new
schema, with no separate step to forget. On PostgreSQL an advisory lock serialises two
processes (two cron jobs) that start at once on an old schema.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlmodel import Session

from newsletter.errors import DatabaseError
from newsletter.files import tighten, touch_private

# A package resource, not a path next to this file: Alembic finds it through
# importlib.resources wherever the package is installed.
MIGRATIONS = "newsletter:migrations"
_MIGRATION_LOCK = 0x6E657773  # "news": any constant shared by all our processes


def display_url(url: str) -> str:
    """The URL with its password masked, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable database URL>"


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(
            f"bad database URL {url!r}: use sqlite:///path.db or postgresql+psycopg://host/db"
        ) from None
    if parsed.get_backend_name() == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        # RETURNING (3.35, 2021) gives a batch of new subscribers their ids in one statement.
        raise DatabaseError(
            f"SQLite {sqlite3.sqlite_version} is too old: newsletter needs 3.35 or newer "
            "(Debian 12, Ubuntu 22.04 and later have it), or use PostgreSQL"
        )
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        file = Path(parsed.database or "")
        if not file.parent.is_dir():
            raise DatabaseError(
                f"cannot create database {parsed.database}: folder {file.parent} does not exist"
            )
        try:
            touch_private(file)
            for suffix in ("-wal", "-shm", "-journal"):
                tighten(file.with_name(file.name + suffix))
        except OSError as error:
            raise DatabaseError(f"cannot create database {file}: {error.strerror}") from None
    try:
        engine = sa.create_engine(parsed, pool_pre_ping=parsed.get_backend_name() != "sqlite")
    except (NoSuchModuleError, ImportError) as error:
        raise DatabaseError(f"unsupported database URL {display_url(url)}: {error}") from None
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the web endpoints read while a send writes; busy_timeout turns a brief lock
    # into a wait instead of "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # With WAL, NORMAL syncs at checkpoints, not at every commit: a power loss may undo the
    # last commits, never corrupt the file; a killed process loses nothing committed. For
    # the ledger see delivery/writer.py.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _alembic_config() -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", MIGRATIONS)
    return config


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as error:
        raise _cannot_open(engine, error) from None


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def upgrade(engine: Engine) -> str:
    """Bring the schema to the newest revision; return it. Cheap when already there."""
    head = head_revision()
    if current_revision(engine) == head:
        return head
    try:
        config = _alembic_config()
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK}
                )
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except SQLAlchemyError as error:
        raise _cannot_open(engine, error) from None
    return head


def open_database(url: str) -> Engine:
    engine = make_engine(url)
    upgrade(engine)
    return engine


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def _cannot_open(engine: Engine, error: SQLAlchemyError) -> DatabaseError:
    original = str(getattr(error, "orig", None) or error).strip()
    reason = original.splitlines()[0] if original else type(error).__name__
    url = engine.url.render_as_string(hide_password=True)
    return DatabaseError(f"cannot open database {url}: {reason}")
