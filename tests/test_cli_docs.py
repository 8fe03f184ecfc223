"""The help text reads like a well-kept CLI and docs/cli.md is generated from it: no words
swallowed as markup, no internal type names, examples that parse, and a reference that is
regenerated whenever the help changes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main

from newsletter.cli import app
from newsletter.cli.help import reference
from tests.conftest import runner

ROOT = Path(__file__).resolve().parent.parent


def commands() -> list[tuple[tuple[str, ...], Any]]:
    root = typer.main.get_command(app)
    found: list[tuple[tuple[str, ...], Any]] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        found.append((path, command))
        if hasattr(command, "list_commands"):
            context = command.context_class(command)
            for name in command.list_commands(context):
                walk(command.get_command(context, name), (*path, name))

    walk(root, ())
    return found


def test_docs_cli_md_is_up_to_date() -> None:
    expected = reference(typer.main.get_command(app))
    current = (ROOT / "docs" / "cli.md").read_text()
    assert current == expected, "run: python -m newsletter.cli.reference > docs/cli.md"


@pytest.mark.parametrize(
    ("path", "command"), commands(), ids=[" ".join(path) or "root" for path, _ in commands()]
)
def test_help_has_no_type_noise_and_loses_no_words(path: tuple[str, ...], command: Any) -> None:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert not re.search(r"<(bool|str|int|float|path|list\[[a-z]+\])>", text), text
    assert "{" not in text.split("\n", 1)[0] and "[[" not in text, text  # the usage line
    flat = " ".join(text.split())
    for param in command.params:
        if getattr(param, "help", None):
            assert " ".join(param.help.split()) in flat, (param.help, text)
    summary = " ".join((command.help or "").split("\n\n")[0].split())
    assert summary in flat


def examples() -> list[tuple[str, str]]:
    found = []
    for path, command in commands():
        for line in (command.help or "").splitlines():
            line = line.strip()
            if line.startswith("Example:"):
                found.append((" ".join(path), line.removeprefix("Example:").strip()))
    return found


@pytest.mark.parametrize(("where", "example"), examples())
def test_every_example_parses(where: str, example: str) -> None:
    words = shlex.split(example.split("  (")[0])
    while words and "=" in words[0]:  # VAR=value before the command
        words.pop(0)
    assert words[0] == "newsletter", example
    command: Any = typer.main.get_command(app)
    words = words[1:]
    parent = None
    name = "newsletter"
    while hasattr(command, "list_commands") and words:
        while words and words[0].startswith("-"):
            words = words[2:] if words[0] == "--config" else words[1:]
        context = command.context_class(command, info_name=name, parent=parent)
        name, words = words[0], words[1:]
        command, parent = command.get_command(context, name), context
        assert command is not None, example
    # Parsing (not running) the rest raises on an unknown option or a missing argument.
    command.make_context(name, list(words), parent=parent)
