"""Every command has help with an example, and the docs name every command."""

from pathlib import Path
from typing import Any

from typer.main import get_command
from typer.testing import CliRunner

from newsletter.cli import app

ROOT = Path(__file__).parent.parent
runner = CliRunner()


def commands() -> list[list[str]]:
    found: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        # As help does: the root group loads its commands only when asked for them.
        if hasattr(command, "list_commands"):
            for name in command.list_commands(None):
                walk(command.get_command(None, name), [*path, name])
        else:
            found.append(path)

    walk(get_command(app), [])
    return found


def test_every_command_has_help_with_an_example() -> None:
    assert len(commands()) >= 5
    for path in commands():
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, path
        assert "Example" in result.stdout, f"{' '.join(path)} --help has no example"


def test_every_command_is_documented() -> None:
    docs = (ROOT / "README.md").read_text() + "".join(
        p.read_text() for p in (ROOT / "docs").glob("*.md")
    )
    for path in commands():
        assert f"newsletter {' '.join(path)}" in docs, f"newsletter {' '.join(path)} undocumented"
