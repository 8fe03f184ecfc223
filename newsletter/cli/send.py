"""`newsletter send` and `newsletter deliveries`."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from datetime import timedelta
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from sqlmodel import Session

from newsletter.cli.output import err, out, plural, print_error, print_json
from newsletter.cli.state import State, state
from newsletter.dates import parse_week
from newsletter.delivery import ledger
from newsletter.delivery.ledger import RetryPolicy
from newsletter.delivery.locks import SenderIdentity, sender_identity
from newsletter.delivery.send import (
    WORKER_NEEDS_POSTGRESQL,
    DueRun,
    SendOptions,
    SendReport,
    audience_preview,
    due_issues,
    find_approved,
    send_issue,
    send_tests,
)
from newsletter.delivery.transport import Transport, display_transport, open_transport
from newsletter.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command("send")(send)
    app.command("deliveries")(deliveries)


def _rate(value: str | None) -> float | None:
    if value is None:
        return None
    number = value.removesuffix("/s").strip()
    try:
        rate = float(number)
    except ValueError:
        raise UsageError(f"bad --rate {value!r}: give messages a second, e.g. 50/s") from None
    if rate <= 0:
        raise UsageError(f"bad --rate {value!r}: it must be above 0")
    return rate


def _transport(st: State, url: str | None) -> Callable[[], Transport]:
    config = st.config()
    chosen = url or config.transport
    open_transport(chosen, config.root)  # a bad URL is a usage error now, not per connection
    return lambda: open_transport(chosen, config.root)


def send(
    ctx: typer.Context,
    slug: Annotated[
        str | None, typer.Argument(metavar="[SLUG]", help="The approved issue.")
    ] = None,
    *,
    due: Annotated[
        bool, typer.Option("--due", help="Send or resume every approved issue that is due.")
    ] = False,
    test_to: Annotated[
        list[str] | None,
        typer.Option(
            "--test-to",
            metavar="ADDRESS",
            help="Send the issue file as it is (approved or not) to this address only; repeat "
            "for several [SLUG default: last week's issue].",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the audience; send nothing.")] = False,
    connections: Annotated[
        int, typer.Option(metavar="N", help="SMTP connections in parallel.")
    ] = 4,
    rate: Annotated[
        str | None, typer.Option(help="At most N messages a second, e.g. 50/s.")
    ] = None,
    transport: Annotated[
        str | None, typer.Option(metavar="URL", help="Transport URL [default: the config's].")
    ] = None,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker",
            help="Share the sending with other --worker senders (PostgreSQL; see docs/scaling.md).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Send an approved issue to every active subscriber once, or resume it.

    Exit status: 0 done or nothing due; 75 work remains for a later run (server unreachable,
    deferred rows); 1 some recipients failed permanently or are in doubt; 2 usage or
    configuration error.

    Example: newsletter send 2022-W51 --connections 8 --rate 100/s
    Example: newsletter send --test-to editor@example.org   (last week's issue file, as it is)
    Example: newsletter send --due --worker   (on each of several machines)
    """
    st = state(ctx)
    config = st.config()
    if worker and (test_to or dry_run):
        raise UsageError("--worker is for sending: not with --test-to or --dry-run")
    if worker and st.engine().dialect.name != "postgresql":
        raise UsageError(WORKER_NEEDS_POSTGRESQL)
    if not 1 <= connections <= 256:
        raise UsageError(f"--connections {connections}: use 1 to 256")
    if test_to and not slug and not due:
        # What `issue new` made by default: the last complete week's issue.
        slug = parse_week("last", config.timezone).label
    if due == bool(slug):
        raise UsageError("give an issue SLUG, or --due (not both)")
    options = SendOptions(
        connections=connections,
        rate=_rate(rate),
        retry=RetryPolicy(give_up_after=timedelta(hours=config.retry_hours)),
    )
    if test_to:
        if slug is None:
            raise UsageError("--test-to sends one issue: give its SLUG, not --due")
        with Session(st.engine()) as session:
            count = send_tests(config, session, slug, test_to, _transport(st, transport))
        out.print(f"Sent {plural(count, 'test message')} of {slug}", markup=False)
        return
    engine = st.engine()
    if dry_run:
        with Session(engine) as session:
            issues = due_issues(session) if due else [find_approved(session, config, slug or "")]
            audience = {issue.slug: audience_preview(session, issue) for issue in issues}
        if as_json:
            print_json(
                {
                    name: {"count": len(people), "recipients": people}
                    for name, people in audience.items()
                }
            )
        else:
            for name, people in audience.items():
                for email in people:
                    out.print(email, markup=False)
                err.print(f"{name}: {plural(len(people), 'recipient')}; nothing sent", markup=False)
        return
    make = _transport(st, transport)
    key = st.key()
    with Session(engine) as session:
        slugs = [issue.slug for issue in due_issues(session)] if due else [slug or ""]
    with ExitStack() as stack:
        identity = stack.enter_context(sender_identity(engine)) if worker else None
        if not due:
            report = _send_one(st, slug or "", make, key, options, as_json, identity)
            if as_json:
                print_json(report.as_dict())
            raise typer.Exit(report.exit_code)
        run = DueRun(display_transport(transport or config.transport))
        for name in slugs:
            try:
                run.reports.append(_send_one(st, name, make, key, options, as_json, identity))
            except UsageError as error:
                run.errors[name] = str(error)
                print_error(error)
    if as_json:
        print_json(run.as_dict())
    elif not run.reports and not run.errors:
        out.print("Nothing due.", markup=False)
    raise typer.Exit(run.exit_code)


def _send_one(
    st: State,
    slug: str,
    make: Callable[[], Transport],
    key: bytes,
    options: SendOptions,
    as_json: bool,
    worker: SenderIdentity | None,
) -> SendReport:
    config, engine = st.config(), st.engine()
    if as_json or not err.is_terminal:
        report = send_issue(config, engine, key, slug, make, options, worker=worker)
    else:
        with Progress(
            TextColumn(f"{slug}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        ) as progress:
            task = progress.add_task("send", total=None, rate="")

            def update(done: int, total: int) -> None:
                speed = progress.tasks[0].speed or 0
                progress.update(task, completed=done, total=total, rate=f"{speed:.0f}/s")

            report = send_issue(
                config, engine, key, slug, make, options, worker=worker, on_progress=update
            )
    if not as_json:
        _print_report(report)
    return report


def _print_report(report: SendReport) -> None:
    if report.locked:
        who = "a sender without --worker" if report.worker else "another process"
        out.print(f"{report.slug}: {who} is sending it; nothing to do here", markup=False)
        return
    speed = report.sent / report.elapsed if report.elapsed else 0.0
    out.print(
        f"{report.slug}: sent {report.sent}, deferred {report.deferred}, failed "
        f"{report.failed}, unknown {report.unknown}, skipped {report.skipped} in "
        f"{report.elapsed:.1f} s ({speed:.0f}/s)",
        markup=False,
    )
    if report.recovered:
        err.print(
            f"{report.recovered} row(s) left in 'sending' by a stopped run are now "
            "'unknown': see 'newsletter deliveries resolve'",
            markup=False,
        )
    if report.paused:
        err.print(f"{report.slug}: {report.paused}; run again later", markup=False)
    if report.sending_elsewhere:
        out.print(
            f"{report.slug}: {plural(report.sending_elsewhere, 'row')} still being sent by other "
            "workers",
            markup=False,
        )
    states = ", ".join(f"{state} {n}" for state, n in report.ledger.items() if n)
    out.print(
        f"{report.slug} ledger: {states or 'empty'}" + (" (finished)" if report.finished else ""),
        markup=False,
    )


def deliveries(
    ctx: typer.Context,
    words: Annotated[
        list[str], typer.Argument(metavar="[resolve] SLUG", help="SLUG or 'resolve SLUG'.")
    ],
    *,
    state_filter: Annotated[
        str | None, typer.Option("--state", help="Only rows in this state.")
    ] = None,
    resend: Annotated[
        bool, typer.Option("--resend", help="resolve: send unknown rows again.")
    ] = False,
    mark_sent: Annotated[
        bool, typer.Option("--mark-sent", help="resolve: count unknown rows as sent.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show an issue's ledger (counts and rows per state), or settle the rows in 'unknown'
    with 'deliveries resolve SLUG --resend|--mark-sent'.

    Example: newsletter deliveries 2022-W51 --state failed
    """
    st = state(ctx)
    config = st.config()
    if words[:1] == ["resolve"]:
        if len(words) != 2 or resend == mark_sent:
            raise UsageError("use: newsletter deliveries resolve SLUG --resend|--mark-sent")
        with Session(st.engine()) as session:
            issue = find_approved(session, config, words[1])
            assert issue.id is not None
            slug = issue.slug
            changed = ledger.resolve(session, issue.id, resend=resend)
        verb = "queued again" if resend else "marked sent"
        out.print(f"{slug}: {changed} unknown row(s) {verb}", markup=False)
        return
    if len(words) != 1 or resend or mark_sent:
        raise UsageError("use: newsletter deliveries SLUG [--state S], or deliveries resolve SLUG")
    if state_filter and state_filter not in ledger.STATES:
        raise UsageError(f"unknown state {state_filter!r}: use one of {', '.join(ledger.STATES)}")
    with Session(st.engine()) as session:
        issue = find_approved(session, config, words[0])
        assert issue.id is not None
        tally = ledger.counts(session, issue.id)
        rows = ledger.rows(session, issue.id, state_filter) if state_filter else []
        listed = [
            {
                "email": r.email,
                "state": r.state,
                "attempts": r.attempts,
                "code": r.last_code,
                "error": r.last_error,
                "updated_at": r.updated_at.isoformat(),
                "sent_at": r.sent_at.isoformat() if r.sent_at else None,
                "claimed_by": r.claimed_by,
            }
            for r in rows
        ]
        finished = issue.finished_at is not None
    if as_json:
        print_json({"slug": issue.slug, "finished": finished, "counts": tally, "rows": listed})
        return
    out.print(
        f"{issue.slug}: "
        + ", ".join(f"{s} {n}" for s, n in tally.items())
        + (" (finished)" if finished else ""),
        markup=False,
    )
    if listed:
        table = Table(show_edge=False, pad_edge=False)
        for column in ("email", "state", "attempts", "code", "error"):
            table.add_column(column, overflow="fold")
        for row in listed:
            table.add_row(
                *(
                    str(row[c] if row[c] is not None else "")
                    for c in ("email", "state", "attempts", "code", "error")
                )
            )
        out.print(table)
