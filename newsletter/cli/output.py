"""Where output goes: results to stdout, progress and diagnostics to stderr, so that
`--json` output can be piped even while a progress bar is drawn."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(value: Any) -> None:
    out.out(json.dumps(value, ensure_ascii=False, indent=2), highlight=False)
