"""Where output goes: results to stdout, progress and diagnostics to stderr, so that
`--json` output can be piped even while a progress bar is drawn."""

from __future__ import annotations

import json
import re
from typing import Any

from rich.console import Console
from rich.text import Text

from newsletter.untrusted import CONTROL, visible


class PlainConsole(Console):
    """A console that prints text as text. Much of what commands print came from outside
    (feed titles, bounce diagnostics, names from the web form): Rich's markup would make
    `[link=...]` in a diagnostic a terminal hyperlink, and escape sequences in it would
    clear the screen or retitle the window. So markup is off for every string, table cells
    included, and control characters are written out visibly; styles are given as `Text`
    objects, whose strings go through `visible` too (`styled`)."""

    def render_str(self, text: str, **options: Any) -> Text:
        options["markup"] = False
        options["emoji"] = False
        return super().render_str(visible(text), **options)


def styled(text: str, style: str) -> Text:
    """Outside text in a style (bold, red), shown as text."""
    return Text(visible(text), style=style)


out = PlainConsole(highlight=False, soft_wrap=True, markup=False, emoji=False)
err = PlainConsole(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)


def print_error(error: object) -> None:
    """The one way an error reaches the user: one line on stderr, `error: ` and the message
    (which names the input and the fix). The CLI's edge prints a NewsletterError that ends a
    command this way; commands that go on past one (collect, send --due) print each so."""
    err.print(f"error: {error}", soft_wrap=True)


def print_json(value: Any) -> None:
    """JSON, escaped by the JSON encoder alone: the terminal filter would write DEL or C1 as
    `\\x7f`, which is no JSON escape. The encoder escapes C0 itself; DEL, C1, line
    separators and bidi controls (legal in JSON, harmful on a terminal) become `\\uXXXX`.
    Written to stdout as it is, past Rich."""
    text = _UNSAFE_IN_JSON.sub(
        lambda match: f"\\u{ord(match.group(0)):04x}",
        json.dumps(value, ensure_ascii=False, indent=2),
    )
    out.file.write(text + "\n")
    out.file.flush()


# untrusted.CONTROL but C0, which json.dumps escapes (and whose newlines indent it).
_UNSAFE_IN_JSON = re.compile(CONTROL.pattern.replace(r"\x00-\x1f", ""))


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
