"""Engine, sessions and migrations.

Migrations run on start: a user who upgrades the package and runs any command gets the new
schema, with no separate step to forget. On PostgreSQL an advisory lock serialises two
processes (two cron jobs) that start at once on an old schema.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
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

from newsletter.atomic_files import tighten, touch_private
from newsletter.errors import DatabaseError
from newsletter.models import UTCDateTime

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


class Cursor:
    """Statements run on the database driver's own cursor, for the paths that run one per
    message or click (the send's claims, starts and outcomes; the bounce policy; the click
    counter; the report's counts). Through the ORM each cost about 40 µs of Python where
    the database needs 6. The SQL is written once for both databases (`?` for a value,
    `IN ?` for a list). Made from a SQLAlchemy connection (the send's ledger writer and the
    click counter, which commit with `commit`), or from a session (`Cursor.of`), inside
    whose transaction it then runs and which its caller commits."""

    def __init__(self, connection: sa.Connection) -> None:
        self.dialect = connection.dialect
        self.sqlite = self.dialect.name == "sqlite"
        dbapi = connection.connection.dbapi_connection
        assert dbapi is not None
        self.dbapi = dbapi
        self.cursor = dbapi.cursor()
        self._type = UTCDateTime()
        self._process: Callable[[Any], Any] | None = self._type.impl.dialect_impl(
            self.dialect
        ).bind_processor(self.dialect)

    @classmethod
    def of(cls, where: Session | Cursor) -> Cursor:
        """The session's cursor for its current database connection, made once."""
        if isinstance(where, Cursor):
            return where
        connection = where.connection()
        cursor: Cursor | None = where.info.get("ledger cursor")
        if cursor is None or cursor.dbapi is not connection.connection.dbapi_connection:
            cursor = where.info["ledger cursor"] = cls(connection)
        return cursor

    def commit(self) -> None:
        self.dbapi.commit()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Statements about one outside input, undone alone if anything fails among them
        (the rest of the transaction stays; on PostgreSQL a refused statement would
        otherwise abort all of it). The error goes on to the caller."""
        if self.sqlite and not self.dbapi.in_transaction:
            self._execute("BEGIN", ())  # so that RELEASE does not commit
        self._execute("SAVEPOINT one_input", ())
        try:
            yield
        except Exception:
            self._execute("ROLLBACK TO SAVEPOINT one_input", ())
            self._execute("RELEASE SAVEPOINT one_input", ())
            raise
        self._execute("RELEASE SAVEPOINT one_input", ())

    def stamp(self, moment: datetime) -> object:
        """A time as the UTCDateTime column stores it on this database."""
        value = self._type.process_bind_param(moment, self.dialect)
        return self._process(value) if self._process else value

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        self._execute(sql, params)
        return list(self.cursor.fetchall())

    def count(self, sql: str, *params: object) -> int:
        """Rows changed by `sql`."""
        self._execute(sql, params)
        return int(self.cursor.rowcount)

    def _execute(self, sql: str, params: tuple[object, ...]) -> None:
        values: list[object] = []
        text = sql
        if self.sqlite:
            for param in params:
                if isinstance(param, list):
                    text = text.replace("IN ?", "IN (" + ",".join("?" * len(param)) + ")", 1)
                    values += param
                else:
                    values.append(param)
        else:
            text = text.replace("IN ?", "= ANY(%s)").replace("?", "%s")
            values = list(params)
        self.cursor.execute(text, values)


def read_time(value: object) -> datetime | None:
    """A UTCDateTime column as Cursor.rows returns it (SQLite gives text): Cursor.stamp's
    counterpart."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, datetime)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
