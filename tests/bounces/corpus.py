"""The labelled corpus of returned mail and how well we read it.

`flufl/` holds the bounces that ship with Mailman's flufl.bounce (Apache License 2.0, see
flufl/LICENSE); `own/` holds messages written for this project after real systems' formats
(Gmail, Microsoft 365, Yahoo, Postfix, Exim, qmail, Exchange, Domino, ARF feedback loops,
auto-repliers; same licence as the project). `labels.csv` gives each file the call a person
made by reading it, and why. `python -m tests.bounces.corpus` prints the figures that
bench/RESULTS.md records; tests/test_bounce_corpus.py keeps them from regressing.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.feedback.parse import Report, parse

HERE = Path(__file__).resolve().parent
PRIORITY = ("complaint", "hard", "soft", "delayed", "unsubscribe", "auto-reply", "none")


def call(reports: list[Report]) -> str:
    """One message's call, as the labels give it."""
    kinds = set()
    for report in reports:
        if report.kind == "soft" and not report.counts:
            kinds.add("delayed")
        elif report.kind == "unrecognised":
            kinds.add("none")
        else:
            kinds.add(report.kind)
    return next((kind for kind in PRIORITY if kind in kinds), "none")


@dataclass
class Figures:
    files: int = 0
    agree: int = 0
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    wrong: list[tuple[str, str, str]] = field(default_factory=list)

    def precision(self, kind: str) -> float:
        c = self.counts.get(kind, {})
        called = c.get("tp", 0) + c.get("fp", 0)
        return c.get("tp", 0) / called if called else 1.0

    def recall(self, kind: str) -> float:
        c = self.counts.get(kind, {})
        real = c.get("tp", 0) + c.get("fn", 0)
        return c.get("tp", 0) / real if real else 1.0


def evaluate() -> Figures:
    figures = Figures()
    with (HERE / "labels.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            got = call(parse((HERE / row["file"]).read_bytes(), b"k" * 32, "n").reports)
            truth = row["label"]
            figures.files += 1
            figures.agree += got == truth
            if got != truth:
                figures.wrong.append((row["file"], truth, got))
            for kind in ("hard", "complaint"):
                c = figures.counts.setdefault(kind, {"tp": 0, "fp": 0, "fn": 0})
                if got == kind and truth == kind:
                    c["tp"] += 1
                elif got == kind:
                    c["fp"] += 1
                elif truth == kind:
                    c["fn"] += 1
    return figures


def main() -> None:
    figures = evaluate()
    print(
        f"bounce corpus: {figures.files} labelled messages, {figures.agree} called as labelled "
        f"({figures.agree / figures.files:.1%})"
    )
    for kind in ("hard", "complaint"):
        c = figures.counts[kind]
        print(
            f"  {kind}: precision {figures.precision(kind):.3f}, recall "
            f"{figures.recall(kind):.3f} (tp {c['tp']}, fp {c['fp']}, fn {c['fn']})"
        )
    for file, truth, got in figures.wrong:
        print(f"  {file}: labelled {truth}, called {got}")


if __name__ == "__main__":
    main()
