"""The repository root is the worked example: its committed newsletter.toml and
issues/2022-W51.md, over the bundled samples, render to the golden files in snapshots/ and
pass every check. Rendering reads the repository's files and writes nothing there."""

from __future__ import annotations

import os
from pathlib import Path

from sqlmodel import Session

from newsletter.collect.run import collect
from newsletter.config import load_config
from newsletter.db import open_database
from newsletter.editorial.checks import check_rendered
from newsletter.editorial.render import render_file

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOTS = Path(__file__).parent / "snapshots"


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
    for name, content in (
        ("sample-2022-W51.txt", rendered.text.source),
        ("sample-2022-W51.html", rendered.html.source),
    ):
        path = SNAPSHOTS / name
        if os.environ.get("UPDATE_SNAPSHOTS"):
            path.write_text(content)
        assert content == path.read_text(), (
            f"{name} changed; rerun with UPDATE_SNAPSHOTS=1 if meant"
        )
    engine.dispose()


def test_the_samples_outputs_are_ignored_by_git() -> None:
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    for entry in ("*.db", "/build/", "/outbox/", "newsletter.key"):
        assert entry in ignored
