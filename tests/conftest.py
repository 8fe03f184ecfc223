"""Fixtures: every test gets its own folder, environment and database.

Tests that store anything take `project`, which runs them once on SQLite and once on
PostgreSQL (a fresh schema per test, dropped afterwards). PostgreSQL is not optional: when it
is unreachable those tests fail, so a green run means both databases were exercised.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from typer.testing import CliRunner, Result

# The CLI's consoles are made at import, and a COLUMNS there fixes their width for good (in
# pytest-xdist's workers they came out 80 wide): without one they read COLUMNS as each test
# sets it.
os.environ.pop("COLUMNS", None)

from newsletter.cli import app  # noqa: E402
from newsletter.config import Config, load_config  # noqa: E402
from newsletter.db import open_database  # noqa: E402
from newsletter.project import init_project  # noqa: E402

POSTGRES_URL = os.environ.get(
    "NEWSLETTER_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SAMPLES = Path(__file__).parent.parent / "samples"
runner = CliRunner()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads the developer's config, database or terminal width."""
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_") and name != "NEWSLETTER_TEST_POSTGRES":
            monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'newsletter.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    try:
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as error:
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is unreachable ({error.orig}); start it")
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@dataclass
class Project:
    """A newsletter initialised in a temporary folder, in Kyiv time."""

    root: Path
    config_file: Path
    database_url: str

    @property
    def config(self) -> Config:
        return load_config(self.config_file)

    def engine(self) -> Engine:
        return open_database(self.database_url)

    def run(self, *args: str) -> Result:
        return runner.invoke(app, list(args))

    def add_sources(self, text: str) -> None:
        with self.config_file.open("a", encoding="utf-8") as handle:
            handle.write("\n" + text)


@pytest.fixture
def project(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Project]:
    config_file = tmp_path / "newsletter.toml"
    monkeypatch.setenv("NEWSLETTER_CONFIG", str(config_file))
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", database_url)
    init_project(
        config_file,
        name="War Notes",
        timezone="Europe/Kyiv",
        sender="War Notes <notes@example.org>",
        base_url="https://news.example.org",
    )
    yield Project(tmp_path, config_file, database_url)
    sa.create_engine(database_url).dispose()


pytest_plugins = [
    "tests.webserver",
    "tests.browser",
    "tests.smtpserver",
    "tests.liveweb",
    "tests.sending",
    "tests.imapserver",
    "tests.providerservers",
]


SAMPLE_SOURCES = f"""
[[sources]]
name = "kyiv-independent"
kind = "feed"
location = "{SAMPLES}/feeds/kyiv-independent.rss"

[[sources]]
name = "war-notes"
kind = "feed"
location = "file://{SAMPLES}/feeds/war-notes.atom"

[[sources]]
name = "pages"
kind = "page"
location = "{SAMPLES}/pages/*.html"

[[sources]]
name = "saved"
kind = "text"
location = "{SAMPLES}/texts/putin-negotiations.txt"
url = "https://kyivindependent.com/putin-claims-readiness-for-negotiations/"
published = "2022-12-25T18:52:00+02:00"
"""


@pytest.fixture
def collected(project: Project) -> Project:
    """A project holding the bundled sample articles."""
    project.add_sources(SAMPLE_SOURCES)
    result = project.run("collect")
    assert result.exit_code == 0, result.output
    return project


from tests.dnsserver import dns_server  # noqa: E402, F401  (a fixture for the doctor tests)
