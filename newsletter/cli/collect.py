"""`newsletter collect`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from newsletter.cli.output import err, out, print_error, print_json, styled
from newsletter.cli.state import state
from newsletter.collect.run import SourceReport, choose_sources, collect
from newsletter.errors import DONE, FAILED


def register(app: typer.Typer) -> None:
    app.command("collect")(collect_command)


def collect_command(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[SOURCE_NAME]...", help="Configured sources to read [default: all]."
        ),
    ] = None,
    *,
    feed: Annotated[
        list[str] | None,
        typer.Option("--feed", metavar="LOCATION", help="An RSS/Atom feed: URL, path or glob."),
    ] = None,
    page: Annotated[
        list[str] | None,
        typer.Option("--page", metavar="LOCATION", help="An article page: URL, path or glob."),
    ] = None,
    text: Annotated[
        list[str] | None,
        typer.Option("--text", metavar="FILE", help="A saved article text (needs --url)."),
    ] = None,
    url: Annotated[
        list[str] | None, typer.Option("--url", help="The web address of the n-th --text.")
    ] = None,
    published: Annotated[
        list[str] | None,
        typer.Option(
            "--published", metavar="TIME", help="Publication time (ISO 8601) of the n-th --text."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the reports as JSON.")] = False,
) -> None:
    """Read feeds, pages and saved texts and store their articles, each once.

    Exit status: 0 when every source was read, 1 when some failed (the rest are stored),
    2 for usage errors.

    Example: newsletter collect --feed https://example.org/rss/ --page saved/*.html
    """
    st = state(ctx)
    config = st.config()
    sources = choose_sources(
        config, names or [], feed or [], page or [], text or [], url or [], published or []
    )
    engine = st.engine()
    if as_json or not err.is_terminal:
        reports = collect(config, engine, sources)
    else:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as progress:
            task = progress.add_task("collecting", total=len(sources))
            reports = collect(
                config,
                engine,
                sources,
                on_start=lambda s: progress.update(task, description=f"reading {s.name}"),
                on_done=lambda _: progress.advance(task),
            )
    ok = all(report.ok for report in reports)
    if as_json:
        print_json({"ok": ok, "sources": [report.as_dict() for report in reports]})
    else:
        _print_reports(reports)
    raise typer.Exit(DONE if ok else FAILED)


def _print_reports(reports: list[SourceReport]) -> None:
    table = Table(title=None, show_edge=False, pad_edge=False)
    table.add_column("source", overflow="fold")
    table.add_column("kind")
    for column in ("new", "updated", "unchanged", "errors"):
        table.add_column(column, justify="right")
    for report in reports:
        unchanged = str(report.unchanged) + (
            f" (+{report.not_modified} not modified)" if report.not_modified else ""
        )
        errors = styled(str(len(report.errors)), "red") if report.errors else "0"
        table.add_row(
            report.name, report.kind, str(report.new), str(report.updated), unchanged, errors
        )
    out.print(table)
    for report in reports:
        for warning in report.warnings:
            err.print(f"warning: {warning}")
        for error in report.errors:
            print_error(error)
