"""`newsletter report [SLUG] [--json] [--html FILE] [--last N]`: parse, call the core
(reporting/), print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.bar import Bar
from rich.table import Table
from sqlmodel import Session

from newsletter.atomic_files import atomic_write
from newsletter.cli.output import out, print_json
from newsletter.cli.state import state
from newsletter.errors import UsageError
from newsletter.reporting.figures import IssueFigures, issue_figures, recent_figures
from newsletter.reporting.page import report_page


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    ctx: typer.Context,
    slug: Annotated[
        str | None,
        typer.Argument(help="The issue (e.g. 2022-W51); without it, the last issues side by side."),
    ] = None,
    *,
    last: Annotated[int, typer.Option("--last", help="How many issues to compare.")] = 6,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    html_file: Annotated[
        Path | None,
        typer.Option("--html", metavar="FILE", help="Write one self-contained HTML page."),
    ] = None,
) -> None:
    """Delivery, bounces, complaints, unsubscribes and clicks per article, for one issue or
    the last few. Counts only: nothing says who clicked (docs/privacy.md).

    Example: newsletter report 2022-W51
    Example: newsletter report 2022-W51 --html report.html
    Example: newsletter report --last 8 --json
    """
    if last < 1:
        raise UsageError("--last must be 1 or more")
    st = state(ctx)
    config = st.config()
    with Session(st.engine()) as session:
        one = issue_figures(session, config, slug) if slug else None
        # The last issues: the report without SLUG, and the HTML page's trend chart.
        needed = one is None or html_file is not None
        trend = recent_figures(session, config, last) if needed else []
    if html_file is not None:
        if one is None:
            if not trend:
                raise UsageError("no issue has been sent yet: nothing to report")
            one = trend[-1]
        atomic_write(html_file, report_page(config.name, one, trend).encode())
        out.print(f"wrote {html_file}")
        return
    if as_json:
        print_json(one.as_dict() if one else [issue.as_dict() for issue in trend])
        return
    if one is not None:
        _print_issue(one)
    else:
        _print_trend(trend)


def _print_issue(f: IssueFigures) -> None:
    out.print(f"{f.slug}: {f.subject}")
    out.print(
        f"recipients {f.recipients}, delivered {f.delivered}, deferred {f.deferred}, "
        f"failed {f.failed}, in doubt {f.in_doubt}; bounced {f.bounced_hard} hard / "
        f"{f.bounced_soft} soft, complained {f.complained}, unsubscribed after {f.unsubscribed}",
    )
    out.print(f"clicks {f.clicks} ({100 * f.click_rate:.1f} % of delivered)")
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("article", overflow="fold", ratio=3)
    table.add_column("clicks", justify="right")
    if any(a.readers is not None for a in f.articles):
        table.add_column("readers", justify="right")
    table.add_column("share", justify="right")
    table.add_column("rate", justify="right")
    table.add_column("", ratio=2)
    top = max((a.clicks for a in f.articles), default=0) or 1
    for a in f.articles:
        cells = [a.title, str(a.clicks)]
        if a.readers is not None:
            cells.append(str(a.readers))
        cells += [f"{100 * a.share:.0f} %", f"{100 * a.rate:.1f} %"]
        table.add_row(*cells, Bar(top, 0, a.clicks, color="blue"))
    out.print(table)
    if f.opens is not None:
        out.print(
            f"opens {f.opens['other']} (and {f.opens['machine']} by machines): {f.opens['note']}",
        )


def _print_trend(issues: list[IssueFigures]) -> None:
    if not issues:
        out.print("no issue has been sent yet")
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("issue", "delivered", "bounced", "complained", "unsubscribed", "clicks",
                   "click rate", ""):  # fmt: skip
        table.add_column(column, justify="left" if column in ("issue", "") else "right")
    top = max(i.click_rate for i in issues) or 1
    for i in issues:
        table.add_row(
            i.slug, str(i.delivered), str(i.bounced), str(i.complained), str(i.unsubscribed),
            str(i.clicks), f"{100 * i.click_rate:.1f} %", Bar(top, 0, i.click_rate, color="blue"),
        )  # fmt: skip
    out.print(table)
