"""`newsletter init` and `newsletter db`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.output import out, print_json
from newsletter.cli.state import state
from newsletter.config import CONFIG_FILE
from newsletter.db import current_revision, display_url, make_engine, upgrade
from newsletter.project import init_project

db_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Database schema.")


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.add_typer(db_app, name="db")


def init(
    ctx: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Argument(
            help="Folder for newsletter.toml (created if needed) [default: where --config "
            "points, else the current folder].",
        ),
    ] = None,
    *,
    name: Annotated[str, typer.Option(help="The newsletter's name.")] = "My Newsletter",
    timezone: Annotated[
        str, typer.Option(help="IANA time zone that defines the newsletter's weeks.")
    ] = "UTC",
    sender: Annotated[
        str, typer.Option("--from", help="From address: 'Name <user@example.org>'.")
    ] = "Newsletter <newsletter@example.org>",
    base_url: Annotated[
        str, typer.Option(help="Public address of the web endpoints.")
    ] = "https://example.org/newsletter",
    postal_address: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="The sender's postal address for every issue's footer (CAN-SPAM and most "
            "providers require one) [default: none yet; set it in newsletter.toml later].",
        ),
    ] = None,
    language: Annotated[
        str,
        typer.Option(
            metavar="TAG",
            help="The language of every word readers see (BCP 47: en, uk; docs/languages.md).",
        ),
    ] = "en",
    force: Annotated[bool, typer.Option(help="Replace an existing newsletter.toml.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Write a commented starter newsletter.toml and create the database.

    Example: newsletter init war-notes --name "War Notes" --timezone Europe/Kyiv
    Example: newsletter init war-notes-uk --name "Воєнні нотатки" --language uk
    """
    location = state(ctx).location
    if directory is not None:
        target = directory / CONFIG_FILE
    else:  # a newsletter.toml found in a parent folder is not where a new one goes
        target = location.path if location.named else Path.cwd() / CONFIG_FILE
    created = init_project(
        target,
        name=name,
        timezone=timezone,
        sender=sender,
        base_url=base_url,
        postal_address=postal_address,
        language=language,
        force=force,
    )
    if as_json:
        print_json({"config": str(created.config), "database": created.database_url})
        return
    out.print(f"Wrote {created.config}")
    out.print(f"Database {created.database_url} is ready")
    out.print(
        f"Next: add [[sources]] to {created.config}, then run 'newsletter collect'.",
    )
    if not postal_address:
        out.print(
            f"Before sending, set [newsletter] postal_address in {created.config}: the footer "
            "needs one (CAN-SPAM), and 'issue check' warns until it is there.",
        )


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply the database migrations (every command also does this on start).

    Example: NEWSLETTER_DATABASE_URL=postgresql+psycopg://localhost/news newsletter db upgrade
    """
    url = state(ctx).config().database_url
    engine = make_engine(url)
    before = current_revision(engine)
    after = upgrade(engine)
    change = "already at" if before == after else f"upgraded from {before or 'empty'} to"
    out.print(f"{display_url(url)}: {change} revision {after}")
