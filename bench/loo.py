#!/usr/bin/env python3
"""Leave one mail system out: how the bounce reader would score on mail systems it has not
seen, measured on the shared corpus (../shared/bounce-corpus).

The reader's words are two alternations of phrases (feedback/classify.py: what means "the
address is dead", what means "something else refused it"), grown while reading this corpus.
A phrase that matches the messages of one mail system only was, in all likelihood, written
from that system's messages. So each system's messages (the file name's prefix:
lhost-postfix, rhost-google, arf...) are judged with every phrase whose only support in the
corpus is that system taken out, status codes (RFC 3463) and every phrase another system
also uses kept; the calls of all systems, so judged, are scored together as the corpus's own
score.py scores a run (per message: hard precision, hard recall). Printed beside the plain
figure of the same run.

usage: .venv/bin/python bench/loo.py [CORPUS_DIR]
"""

from __future__ import annotations

import collections
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from newsletter.feedback import classify, parse

RANK = {"complaint": 5, "hard": 4, "hard-or-soft": 3, "soft": 2}
KEY = b"k" * 32


def alternatives(pattern: str) -> list[str]:
    """The top-level alternatives of a regular expression (outside groups and classes)."""
    parts, depth, current, escaped, in_class = [], 0, "", False, False
    for char in pattern:
        if escaped:
            current, escaped = current + char, False
            continue
        if char == "\\":
            current, escaped = current + char, True
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += char
    return [*parts, current]


def system(name: str) -> str:
    return re.sub(r"-\d+$", "", name.removesuffix(".eml"))


def calls(folder: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Our call per message (its strongest report kind), and the words each message's
    judgement read (what classify.severity was given)."""
    read: dict[str, list[str]] = collections.defaultdict(list)
    original: Callable[..., classify.Severity] = classify.severity
    current = ""

    def traced(status: str | None, text: str, **options: bool | None) -> classify.Severity:
        read[current].append(text)
        return original(status, text, **options)

    parse.severity = traced  # type: ignore[assignment]
    found: dict[str, str] = {}
    try:
        for path in sorted(folder.glob("*.eml")):
            current = path.name
            found[path.name] = strongest(kinds(path))
    finally:
        parse.severity = original  # type: ignore[assignment]
    return found, read


def kinds(path: Path) -> list[str]:
    parsed = parse.parse(path.read_bytes(), KEY, "corpus")
    return [str(report.kind).lower() for report in parsed.reports]


def strongest(found: list[str]) -> str:
    return max(found, key=lambda k: RANK.get(k, 1)) if found else "missing"


def score(labels: dict[str, list[dict[str, str]]], ours: dict[str, str]) -> tuple[float, float]:
    right = wrong = real = 0
    for name, recipients in labels.items():
        truth = strongest([r["label"] for r in recipients])
        call = ours.get(name, "missing")
        if call == "hard":
            right += truth == "hard"
            wrong += truth not in ("hard", "hard-or-soft")
        real += truth == "hard"
    return right / max(1, right + wrong), right / max(1, real)


def main() -> None:
    corpus = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/bounce-corpus")
    labels = json.loads((corpus / "labels.json").read_text())
    folder = corpus / "messages"
    plain, words = calls(folder)
    rules = {
        "_DEAD_ADDRESS": classify._DEAD_ADDRESS,
        "_NOT_THE_ADDRESS": classify._NOT_THE_ADDRESS,
    }
    # Which systems' messages each phrase matches.
    support: dict[tuple[str, str], set[str]] = {}
    for rule, compiled in rules.items():
        for phrase in alternatives(compiled.pattern):
            matcher = re.compile(phrase, compiled.flags)
            support[(rule, phrase)] = {
                system(name) for name, texts in words.items() if any(map(matcher.search, texts))
            }
    systems = sorted({system(name) for name in labels})
    judged: dict[str, str] = {}
    taken_out: dict[str, int] = {}
    try:
        for left_out in systems:
            for rule, compiled in rules.items():
                kept = [p for p in alternatives(compiled.pattern)
                        if support[(rule, p)] != {left_out}]  # fmt: skip
                setattr(classify, rule, re.compile("|".join(kept), compiled.flags))
            taken_out[left_out] = sum(s == {left_out} for s in support.values())
            for path in sorted(folder.glob(f"{left_out}-*.eml")):
                if system(path.name) == left_out:
                    judged[path.name] = strongest(kinds(path))
            if (folder / f"{left_out}.eml").exists():
                judged[f"{left_out}.eml"] = strongest(kinds(folder / f"{left_out}.eml"))
    finally:
        for rule, compiled in rules.items():
            setattr(classify, rule, compiled)
    precision, recall = score(labels, plain)
    loo_precision, loo_recall = score(labels, judged)
    single = sum(1 for s in support.values() if len(s) == 1)
    print(f"{len(labels)} messages from {len(systems)} mail systems; {len(support)} phrases, "
          f"{single} of them matched by one system's messages only")  # fmt: skip
    print(f"plain:                 hard precision {precision:.3f} recall {recall:.3f}")
    print(f"leave one system out:  hard precision {loo_precision:.3f} recall {loo_recall:.3f}")
    worst = sorted(taken_out.items(), key=lambda item: -item[1])[:5]
    print("phrases taken out, most: " + ", ".join(f"{name} {n}" for name, n in worst))


if __name__ == "__main__":
    main()
