"""`newsletter articles list|show`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from sqlmodel import Session

from newsletter.cli.output import err, out, print_json, styled
from newsletter.cli.state import state
from newsletter.collect import store
from newsletter.dates import Period, parse_period, parse_week
from newsletter.errors import NotFoundError, UsageError
from newsletter.sanitize import html_to_text

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Stored articles.")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="articles")


@app.command("list")
def list_articles(
    ctx: typer.Context,
    *,
    author: Annotated[
        list[str] | None,
        typer.Option(
            "--author",
            metavar="NAME",
            help="Only this author (case and spacing ignored); repeat for several.",
        ),
    ] = None,
    week: Annotated[
        str | None,
        typer.Option(
            help="An ISO week (2022-W51), or last, this or -N, in the newsletter's time zone."
        ),
    ] = None,
    since: Annotated[str | None, typer.Option(help="From this date or time.")] = None,
    until: Annotated[str | None, typer.Option(help="To this date (inclusive) or time.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List stored articles by publication time.

    Example: newsletter articles list --author "Asami Terajima" --week 2022-W51 --json
    """
    st = state(ctx)
    config = st.config()
    period: Period | None = None
    if week and (since or until):
        raise UsageError("--week cannot be combined with --since/--until: pick one")
    if week:
        period = parse_week(week, config.timezone)
    elif since or until:
        period = parse_period(since, until, config.timezone)
    with Session(st.engine()) as session:
        found = store.query(session, authors=author or (), period=period)
        if as_json:
            print_json([store.to_dict(article, config.timezone) for article in found])
            return
        if not found:
            who = f" by {' or '.join(author)}" if author else ""
            when = f" in {period.label}" if period else ""
            err.print(f"No articles{who}{when}.")
            return
        table = Table(show_edge=False, pad_edge=False)
        table.add_column("published")
        table.add_column("title", overflow="fold")
        table.add_column("authors", overflow="fold")
        table.add_column("min", justify="right")
        table.add_column("url", overflow="fold")
        for article in found:
            local = article.published.astimezone(config.timezone)
            table.add_row(
                local.strftime("%a %Y-%m-%d %H:%M"),
                article.title,
                ", ".join(article.author_names),
                str(article.reading_minutes),
                article.url,
            )
        out.print(table)


@app.command("show")
def show_article(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="The article's URL (tracking parameters ignored).")],
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one stored article.

    Example: newsletter articles show https://kyivindependent.com/some-story/
    """
    st = state(ctx)
    zone = st.config().timezone
    with Session(st.engine()) as session:
        article = store.find(session, url)
        if article is None:
            raise NotFoundError(f"no stored article at {url}: collect its source first")
        if as_json:
            print_json(store.to_detail(article, zone))
            return
        published = article.published.astimezone(zone).strftime("%A %Y-%m-%d %H:%M %Z")
        out.print(styled(article.title, "bold"))
        out.print(
            f"{', '.join(article.author_names) or 'no author'} · {published} · "
            f"{article.reading_minutes} min read",
        )
        out.print(article.url)
        if article.image:
            out.print(f"image: {article.image}")
        if article.tags:
            out.print(f"tags: {', '.join(article.tags)}")
        out.print()
        out.print(html_to_text(article.body_html or article.summary_html))
