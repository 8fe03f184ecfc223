"""Where output goes: results to stdout, progress and diagnostics to stderr, so that
`--json` output can be piped even while a progress bar is drawn."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_error(error: object) -> None:
    """The one way an error reaches the user: one line on stderr, `error: ` and the message
    (which names the input and the fix). The CLI's edge prints a NewsletterError that ends a
    command this way; commands that go on past one (collect, send --due) print each so."""
    err.print(f"error: {error}", markup=False, soft_wrap=True)


def print_json(value: Any) -> None:
    out.out(json.dumps(value, ensure_ascii=False, indent=2), highlight=False)


def plural(count: int, word: str, many: str | None = None) -> str:
    """ "1 article", "2 articles": counts printed for people."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def shown(value: Any) -> str:
    """A value as a person reads it: dicts as `key: value` pairs, lists comma-separated,
    None as nothing (never Python's repr)."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{key}: {shown(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(shown(item) for item in value)
    return str(value)
