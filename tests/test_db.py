"""Migrations create exactly the tables the models describe, on both databases."""

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from newsletter import models  # noqa: F401 - registers the tables
from newsletter.db import current_revision, head_revision, make_engine, upgrade
from newsletter.errors import DatabaseError
from tests.conftest import Project


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    assert upgrade(engine) == head_revision()
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        differences = list(compare_metadata(context, SQLModel.metadata))
    engine.dispose()
    assert differences == []


def test_upgrade_is_idempotent_and_reported(project: Project) -> None:
    engine = project.engine()
    assert current_revision(engine) == head_revision()
    result = project.run("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert f"already at revision {head_revision()}" in result.stdout
    engine.dispose()


def test_an_sqlite_without_returning_is_refused_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(DatabaseError, match=r"SQLite 3\.31\.1 is too old: .* 3\.35 or newer"):
        make_engine(f"sqlite:///{tmp_path / 'n.db'}")
