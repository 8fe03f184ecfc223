"""The `newsletter` command. Each command parses, calls one library function and prints;
`NewsletterError` becomes one line on stderr and its exit code, here and nowhere else."""

from __future__ import annotations

import functools
import importlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core
import typer.main

from newsletter import __version__
from newsletter.cli.help import PlainHelp, plain
from newsletter.cli.output import print_error
from newsletter.cli.state import State
from newsletter.config import config_path, environment_value
from newsletter.errors import SOFTWARE, NewsletterError

# Each command and group, in the order help lists them, and the module (newsletter.cli.NAME)
# whose register() defines it. A module is imported when its command runs or help lists it:
# importing them all took 1.8-2.6 s on a 2-core machine, most of it libraries that only some
# commands use.
COMMANDS = {
    "init": "setup",
    "collect": "collect",
    "serve": "serve",
    "send": "send",
    "report": "report",
    "deliveries": "send",
    "articles": "articles",
    "issue": "issue",
    "approvers": "approvers",
    "archive": "archive",
    "subscribers": "subscribers",
    "db": "setup",
    "bounces": "bounces",
    "doctor": "doctor",
}


class _Group(PlainHelp, typer.core.TyperGroup):
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as error:
            print_error(error)
            raise typer.Exit(error.exit_code) from None

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, name: str) -> Any:
        command = _commands(COMMANDS[name]).get(name) if name in COMMANDS else None
        return plain(command) if command is not None else None


@functools.cache
def _commands(module_name: str) -> dict[str, Any]:
    """The click commands and groups of newsletter.cli.`module_name`, built once by typer
    from its register()."""
    module = importlib.import_module(f"newsletter.cli.{module_name}")
    holder = typer.Typer(rich_markup_mode=None, add_completion=False)
    holder.callback()(lambda: None)  # a group, even for a module with one command
    module.register(holder)
    return dict(typer.main.get_command(holder).commands)  # type: ignore[attr-defined]


app = typer.Typer(
    cls=_Group,
    rich_markup_mode=None,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Turn a reporter's week of articles into a weekly email digest.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"newsletter {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar="NEWSLETTER_CONFIG",
            metavar="FILE",
            help="The configuration file [default: the nearest newsletter.toml in this folder "
            "or a parent].",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    ctx.obj = State(config_path(config))
    ctx.call_on_close(ctx.obj.close)


def main() -> None:
    """Console entry point: the last guard against a traceback reaching a user."""
    try:
        app()
    except Exception as error:  # only reached through a bug
        if environment_value("NEWSLETTER_DEBUG"):
            raise
        print(
            f"error: unexpected {type(error).__name__}: {error} "
            "(set NEWSLETTER_DEBUG=1 for details and report it)",
            file=sys.stderr,
        )
        sys.exit(SOFTWARE)
