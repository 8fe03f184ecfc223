"""The repository root is the worked example: its committed newsletter.toml and
issues/2022-W51.md, over the bundled samples, render to the golden files in snapshots/ and
pass every check. Rendering reads the repository's files and writes nothing there."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sqlmodel import Session

from newsletter.collect.run import collect
from newsletter.config import load_config
from newsletter.db import open_database
from newsletter.editorial.checks import check_rendered
from newsletter.editorial.render import render_file
from tests.issues import assert_snapshot

ROOT = Path(__file__).resolve().parent.parent


def test_the_sample_issue_renders_as_its_snapshots_and_passes_the_checks(tmp_path: Path) -> None:
    env = {"NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path / 'sample.db'}"}
    config = load_config(ROOT / "newsletter.toml", env)
    assert config.authors == ("Asami Terajima",) and config.postal_address
    engine = open_database(config.database_url)
    reports = collect(config, engine, config.sources)
    assert all(report.ok for report in reports), [r.errors for r in reports]
    with Session(engine) as session:
        issue, rendered = render_file(config, session, "2022-W51")
    assert [a.section for a in issue.articles if a.section] == [
        "Behind the front",
        "Also this week",
    ]
    assert sum(1 for a in issue.articles if a.note) == 3 and issue.intro.strip()
    assert check_rendered(config, issue, rendered) == []  # no error, no warning
    assert_snapshot("sample-2022-W51.txt", rendered.text.source)
    assert_snapshot("sample-2022-W51.html", rendered.html.source)
    engine.dispose()


def test_what_the_demo_writes_is_ignored_by_git() -> None:
    """scripts/demo writes these next to the committed sample: none may show as a change."""
    written = ["newsletter.db", "newsletter.db-wal", "newsletter.key", "build/2022-W51/email.html",
               "outbox/1-abc.eml", "build/archive/index.html"]  # fmt: skip
    checked = subprocess.run(
        ["git", "check-ignore", "--no-index", *written], cwd=ROOT, capture_output=True, text=True
    )
    assert checked.stdout.split() == written
    tracked = ["newsletter.toml", "issues/2022-W51.md"]
    kept = subprocess.run(["git", "check-ignore", "--no-index", *tracked], cwd=ROOT)
    assert kept.returncode == 1  # none of them ignored
