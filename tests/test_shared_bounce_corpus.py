"""The bounce reader on mail nobody here wrote: ../shared/bounce-corpus (294 messages from
Sisimai's public test set, labelled; its README says how), read by `bounces process
--dry-run --json` as an operator runs it and scored by the corpus's own score.py.

Floors (issue 26): hard precision >= 0.97 (a hard call stops mail to a person) and recall
>= 0.90; complaints >= 0.95 and >= 0.90; recipients named >= 0.90."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Project

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "bounce-corpus"
FLOORS = {"hard precision": 0.97, "hard recall": 0.90, "complaint precision": 0.95,
          "complaint recall": 0.90, "recipients": 0.90}  # fmt: skip


@pytest.mark.skipif(
    not (CORPUS / "labels.json").is_file(),
    reason=f"the shared bounce corpus is not at {CORPUS} (a checkout beside ../shared)",
)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_shared_corpus_is_read_above_the_floors(project: Project, tmp_path: Path) -> None:
    maildir = tmp_path / "corpus"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for message in sorted((CORPUS / "messages").iterdir()):
        shutil.copy(message, maildir / "new" / message.name)
    result = project.run("bounces", "process", str(maildir), "--dry-run", "--json")
    assert result.exit_code in (0, 1), result.output
    report = tmp_path / "report.jsonl"
    report.write_text(result.stdout)
    scored = subprocess.run(
        [sys.executable, str(CORPUS / "score.py"), str(CORPUS / "labels.json"), str(report)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = scored.strip().splitlines()[-1]
    found = re.search(
        r"(\d+) messages: hard precision ([\d.]+) recall ([\d.]+); complaints precision "
        r"([\d.]+) recall ([\d.]+); recipients named (\d+)/(\d+)",
        line,
    )
    assert found, scored
    messages, hp, hr, cp, cr, named, pairs = found.groups()
    figures = {
        "hard precision": float(hp),
        "hard recall": float(hr),
        "complaint precision": float(cp),
        "complaint recall": float(cr),
        "recipients": int(named) / int(pairs),  # exact: score.py rounds to two places
    }
    assert int(messages) == len(list((CORPUS / "messages").iterdir()))
    low = {name: value for name, value in figures.items() if value < FLOORS[name]}
    assert low == {}, scored
