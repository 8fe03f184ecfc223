"""`newsletter archive build`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from sqlmodel import Session

from newsletter.cli.output import err, out, plural, print_json
from newsletter.cli.state import state
from newsletter.editorial.archive import build_archive

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="The public archive of issues.")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="archive")


@app.command("build")
def build(
    ctx: typer.Context,
    *,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", metavar="FOLDER", help="Folder [default: build/archive/]."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Write a static site of the approved issues: index.html, one page each, feed.xml.

    Example: newsletter archive build --out /var/www/war-notes/archive
    """
    st = state(ctx)
    config = st.config()
    with Session(st.engine()) as session:
        built = build_archive(config, session, out_dir or config.root / "build" / "archive")
    if as_json:
        print_json({"folder": str(built.folder), "issues": built.slugs})
        return
    out.print(str(built.folder / "index.html"))
    err.print(f"{plural(len(built.slugs), 'issue')} in the archive")
