"""`newsletter send` and `newsletter deliveries show|resolve`: parse, call the core
(delivery/send.py), print."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer
import typer.core
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from sqlmodel import Session

from newsletter.cli.output import err, out, plural, print_error, print_json
from newsletter.cli.state import State, state
from newsletter.dates import parse_week
from newsletter.delivery.connections import SendOptions
from newsletter.delivery.ledger import RetryPolicy
from newsletter.delivery.seed_copies import send_tests, with_seeds
from newsletter.delivery.send import (
    DueRun,
    SendReport,
    SendRequest,
    audience_preview,
    ledger_view,
    resend,
    resolve,
)
from newsletter.delivery.send import send as send_issues
from newsletter.delivery.transport import display_transport
from newsletter.errors import UsageError


class _ShowByDefault(typer.core.TyperGroup):
    """`newsletter deliveries SLUG` (the form before `show` and `resolve` existed, which
    scripts and crontabs still use) means `deliveries show SLUG`."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["show", *args]
        return super().resolve_command(ctx, args)


deliveries_app = typer.Typer(
    cls=_ShowByDefault,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="An issue's delivery ledger: show it, or settle the rows in doubt.",
)


def register(app: typer.Typer) -> None:
    app.command("send")(send)
    app.add_typer(deliveries_app, name="deliveries")


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
    if not 1 <= connections <= 256:
        raise UsageError(f"--connections {connections}: use 1 to 256")
    if test_to:
        if due:
            raise UsageError("--test-to sends one issue: give its SLUG, not --due")
        _test_copies(st, slug, test_to, transport)
        return
    request = SendRequest(
        slug=slug,
        due=due,
        worker=worker,
        options=SendOptions(
            connections=connections,
            rate=_rate(rate) if rate is not None else config.rate,
            retry=RetryPolicy(give_up_after=timedelta(hours=config.retry_hours)),
        ),
        transport=display_transport(transport or config.transport),
    )
    if dry_run:
        _dry_run(st, request, as_json)
        return
    raise typer.Exit(_send(st, request, transport, as_json))


def _test_copies(st: State, slug: str | None, test_to: list[str], transport: str | None) -> None:
    """`send --test-to`: the issue file as it is, to those addresses and the seed list."""
    config = st.config()
    # What `issue new` made by default: the last complete week's issue.
    chosen = slug or parse_week("last", config.timezone).label
    addresses = with_seeds(config, test_to)
    with Session(st.engine()) as session:
        count = send_tests(config, session, chosen, addresses, st.transports(transport))
    out.print(f"Sent {plural(count, 'test message')} of {chosen}")


def _dry_run(st: State, request: SendRequest, as_json: bool) -> None:
    """`send --dry-run`: who each issue would go to now; nothing written."""
    preview = audience_preview(st.config(), st.engine(), request)
    if as_json:
        print_json(preview.as_dict())
        return
    for name, people in preview.audiences.items():
        for email in people:
            out.print(email)
        err.print(f"{name}: {plural(len(people), 'recipient')}; nothing sent")


def _send(st: State, request: SendRequest, transport: str | None, as_json: bool) -> int:
    """The send itself, with a progress bar on a terminal; its exit code."""
    config = st.config()
    make = st.transports(transport)
    watcher = TerminalWatcher(show_progress=not as_json and err.is_terminal, quiet=as_json)
    try:
        result = send_issues(config, st.engine(), st.key(), make, request, watcher)
    finally:
        watcher.close()
    if as_json:
        print_json(result.as_dict())
    elif isinstance(result, DueRun) and not result.reports and not result.errors:
        out.print("Nothing due.")
    return result.exit_code


class TerminalWatcher:
    """A progress bar per issue on a terminal, and each report once its send ends."""

    def __init__(self, *, show_progress: bool, quiet: bool) -> None:
        self.show_progress, self.quiet = show_progress, quiet
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def begin(self, slug: str, total: int | None) -> None:
        if not self.show_progress:
            return
        self.close()
        self.progress = Progress(
            TextColumn(slug),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task("send", total=total, rate="")

    def advance(self, done: int) -> None:
        if self.progress is not None and self.task is not None:
            speed = self.progress.tasks[0].speed or 0
            self.progress.update(self.task, completed=done, rate=f"{speed:.0f}/s")

    def end(self, report: SendReport) -> None:
        self.close()
        if not self.quiet:
            _print_report(report)

    def refused(self, slug: str, error: UsageError) -> None:
        print_error(error)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = self.task = None


def _print_report(report: SendReport) -> None:
    if report.locked:
        who = "a sender without --worker" if report.worker else "another process"
        out.print(f"{report.slug}: {who} is sending it; nothing to do here")
        return
    speed = report.sent / report.elapsed if report.elapsed else 0.0
    out.print(
        f"{report.slug}: sent {report.sent}, deferred {report.deferred}, failed "
        f"{report.failed}, unknown {report.unknown}, skipped {report.skipped} in "
        f"{report.elapsed:.1f} s ({speed:.0f}/s)",
    )
    if report.recovered:
        err.print(
            f"{plural(report.recovered, 'row')} left in 'sending' by a stopped run "
            f"{'is' if report.recovered == 1 else 'are'} now 'unknown': see "
            "'newsletter deliveries resolve'",
        )
    if report.waited:
        err.print(
            f"{report.slug}: waited {report.waited:.0f} s in all ({report.waited_for})",
        )
    if report.paused:
        err.print(f"{report.slug}: {report.paused}; run again later")
    if report.sending_elsewhere:
        out.print(
            f"{report.slug}: {plural(report.sending_elsewhere, 'row')} still being sent by other "
            "workers",
        )
    states = ", ".join(f"{state} {n}" for state, n in report.ledger.items() if n)
    out.print(
        f"{report.slug} ledger: {states or 'empty'}" + (" (finished)" if report.finished else ""),
    )


Slug = Annotated[str, typer.Argument(help="The approved issue.")]


@deliveries_app.command("show")
def deliveries_show(
    ctx: typer.Context,
    slug: Slug,
    *,
    state_filter: Annotated[
        str | None, typer.Option("--state", help="Also list the rows in this state.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """An issue's ledger: how many rows are in each state and, with --state, which.

    Example: newsletter deliveries show 2022-W51 --state failed
    """
    st = state(ctx)
    view = ledger_view(st.config(), st.engine(), slug, state_filter)
    if as_json:
        print_json(view.as_dict())
        return
    out.print(
        f"{view.slug}: "
        + ", ".join(f"{s} {n}" for s, n in view.counts.items())
        + (" (finished)" if view.finished else ""),
    )
    if view.waiting:
        out.print(f"waiting: {view.waiting}")
    if view.rows:
        columns = ("email", "state", "attempts", "code", "error")
        table = Table(show_edge=False, pad_edge=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in view.rows:
            table.add_row(*(str(row[c] if row[c] is not None else "") for c in columns))
        out.print(table)


@deliveries_app.command("resend")
def deliveries_resend(
    ctx: typer.Context,
    slug: Slug,
    *,
    state_filter: Annotated[
        str, typer.Option("--state", help="failed, deferred or unknown.", show_default=False)
    ],
    yes: Annotated[bool, typer.Option("--yes", help="Queue them [default: only say].")] = False,
) -> None:
    """Queue an issue's failed, deferred or unknown rows again for the next send (after a
    provider's outage, a fixed account, or rows in doubt you choose to send again: some may
    get two). People suppressed or unsubscribed since are left out, and named.

    Example: newsletter deliveries resend 2022-W51 --state failed --yes
    """
    st = state(ctx)
    name, count, left = resend(st.config(), st.engine(), slug, state_filter, apply=yes)
    for email, why in left:
        err.print(f"left out {email}: {why}")
    if yes:
        out.print(
            f"{name}: {plural(count, f'{state_filter} row')} queued again; "
            "'newsletter send --due' sends them",
        )
    else:
        out.print(
            f"{name}: {plural(count, f'{state_filter} row')} would be queued again; "
            "add --yes to do it",
        )


@deliveries_app.command("resolve")
def deliveries_resolve(
    ctx: typer.Context,
    slug: Slug,
    *,
    resend: Annotated[
        bool, typer.Option("--resend", help="Queue the unknown rows again (some may get two).")
    ] = False,
    mark_sent: Annotated[
        bool,
        typer.Option("--mark-sent", help="Count the unknown rows as sent (some may get none)."),
    ] = False,
) -> None:
    """Settle the rows in doubt ('unknown': a sender stopped while they were on the wire).

    Example: newsletter deliveries resolve 2022-W51 --resend
    """
    if resend == mark_sent:
        raise UsageError("use: newsletter deliveries resolve SLUG --resend|--mark-sent")
    st = state(ctx)
    name, changed = resolve(st.config(), st.engine(), slug, resend=resend)
    verb = "queued again" if resend else "marked sent"
    out.print(f"{name}: {plural(changed, 'unknown row')} {verb}")
