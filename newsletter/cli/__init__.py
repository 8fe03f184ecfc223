"""The `newsletter` command. Each command parses, calls one library function and prints;
`NewsletterError` becomes one line on stderr and its exit code, here and nowhere else."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core

from newsletter import __version__
from newsletter.cli import archive as archive_cli
from newsletter.cli import articles as articles_cli
from newsletter.cli import bounces as bounces_cli
from newsletter.cli import collect as collect_cli
from newsletter.cli import issue as issue_cli
from newsletter.cli import report as report_cli
from newsletter.cli import send as send_cli
from newsletter.cli import serve as serve_cli
from newsletter.cli import setup as setup_cli
from newsletter.cli import subscribers as subscribers_cli
from newsletter.cli.help import PlainHelp, plain
from newsletter.cli.output import print_error
from newsletter.cli.state import State
from newsletter.config import config_path, environment_value
from newsletter.errors import SOFTWARE, NewsletterError


class _Group(PlainHelp, typer.core.TyperGroup):
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as error:
            print_error(error)
            raise typer.Exit(error.exit_code) from None

    def get_command(self, ctx: Any, name: str) -> Any:
        command = super().get_command(ctx, name)
        return plain(command) if command is not None else None


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


setup_cli.register(app)
collect_cli.register(app)
serve_cli.register(app)
send_cli.register(app)
report_cli.register(app)
app.add_typer(articles_cli.app, name="articles")
app.add_typer(issue_cli.app, name="issue")
app.add_typer(archive_cli.app, name="archive")
app.add_typer(subscribers_cli.app, name="subscribers")
app.add_typer(setup_cli.db_app, name="db")
app.add_typer(bounces_cli.app, name="bounces")


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
