"""The README's scripts name commands and modules that exist: `scripts/demo` broke twice
without a test noticing (a moved module, then a command that became a group)."""

import importlib
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main

from newsletter.cli import app

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p for p in (ROOT / "scripts").iterdir() if p.is_file()) + [ROOT / "bench" / "run"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_python_imports_in_scripts_resolve(script: Path) -> None:
    for module, names in re.findall(
        r"from (newsletter[\w.]*) import ([\w, ]+)", script.read_text()
    ):
        imported = importlib.import_module(module)
        for name in names.split(","):
            assert hasattr(imported, name.strip()), f"{script.name}: {module}.{name.strip()}"


def test_every_command_the_demo_runs_exists() -> None:
    root = typer.main.get_command(app)
    text = (ROOT / "scripts" / "demo").read_text()
    lines = re.findall(r"^step (.+)$", text, re.M)
    lines += re.findall(r'^"\$newsletter" (.+?)(?: \|\||$)', text, re.M)
    assert len(lines) > 5
    for line in lines:
        command: Any = root  # typer's own (vendored) click: groups have get_command
        for word in shlex.split(line):
            if not hasattr(command, "get_command") or word.startswith("-"):
                break
            found = command.get_command(command.context_class(command), word)
            assert found is not None, f"scripts/demo: 'newsletter {line}': no command {word!r}"
            command = found
        assert not hasattr(command, "get_command"), f"scripts/demo: '{line}' names a group"
