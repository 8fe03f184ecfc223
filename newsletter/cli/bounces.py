"""`newsletter bounces process|list|show|reprocess`: parse, call the core (feedback/),
print."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from typing import Annotated

import typer
from rich.table import Table
from sqlmodel import Session

from newsletter.cli.output import err, out, plural, print_json
from newsletter.cli.state import State, state
from newsletter.dates import parse_datetime
from newsletter.db import session_scope
from newsletter.errors import UsageError
from newsletter.feedback.listing import one, recent
from newsletter.feedback.policy import Handled
from newsletter.feedback.process import process, watch
from newsletter.feedback.reprocess import reprocess

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Returned mail: bounces, complaints and mailto unsubscribes (docs/bounces.md).",
)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="bounces")


@app.command("process")
def process_command(
    ctx: typer.Context,
    sources: Annotated[
        list[str],
        typer.Argument(
            metavar="SOURCE...",
            help="A Maildir folder, an mbox file, imap://user@host/Folder or "
            "imaps://user@host/Folder (password in NEWSLETTER_IMAP_PASSWORD), or - for one "
            "message on standard input.",
            show_default=False,
        ),
    ],
    *,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would happen; change and move nothing.")
    ] = False,
    recipient: Annotated[
        str | None,
        typer.Option(
            "--recipient",
            metavar="ADDRESS",
            help="The address the MTA delivered the message on standard input to (Postfix's "
            "${original_recipient}).",
        ),
    ] = None,
    watch_folder: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="IMAP only: keep reading as mail arrives (IDLE), reconnecting with back-off, "
            "until SIGTERM or Ctrl-C (a systemd service: docs/scheduling.md).",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per line per report.")
    ] = False,
) -> None:
    """Read returned mail, act on each report, and file each message in the processed
    folder (mail nobody could read goes to the unrecognised folder, for a person). Exits 1
    when some message could not be read.

    Example: newsletter bounces process ~/Maildir/.bounces
    Example: newsletter bounces process imaps://bounces@mail.example.org/INBOX --json
    Example: newsletter bounces process imaps://bounces@mail.example.org/INBOX --watch
    """
    st = state(ctx)

    def shown(item: Handled) -> None:
        if as_json:
            out.out(json.dumps(item.as_dict(), ensure_ascii=False), highlight=False)
        else:
            who = item.recipient or "(no address)"
            code = f" {item.status}" if item.status else ""
            extra = " (seen before)" if item.duplicate else ""
            out.print(f"{item.source}: {who} {item.kind}{code} -> {item.action}{extra}")

    if watch_folder:
        if len(sources) != 1:
            raise UsageError("--watch reads one IMAP folder: give one imaps://... source")
        _watch(st, sources[0], dry_run, shown)
        return
    report = process(
        st.config(),
        st.engine(),
        st.key(),
        sources,
        dry_run=dry_run,
        envelope_to=recipient,
        on_report=shown,
    )
    for note in report.notes:
        err.print(f"warning: {note}")
    summary = ", ".join(f"{action} {count}" for action, count in sorted(report.actions.items()))
    err.print(
        f"{plural(report.messages, 'message')} read"
        + (f": {summary}" if summary else "")
        + (f"; {report.unreadable} could not be read (kept aside)" if report.unreadable else "")
        + (" (dry run: nothing changed)" if dry_run else ""),
    )
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _watch(st: State, location: str, dry_run: bool, shown: Callable[[Handled], None]) -> None:
    """Until SIGTERM (systemd's stop) or SIGINT: each ends the wait at once, and the run
    ends between messages, never inside one's transaction."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    err.print(f"watching {location.split('?')[0]} (SIGTERM or Ctrl-C ends it)")
    report = watch(
        st.config(),
        st.engine(),
        st.key(),
        location,
        stop,
        dry_run=dry_run,
        on_report=shown,
        on_note=lambda note: err.print(f"warning: {note}"),
    )
    err.print(
        f"stopped: {plural(report.messages, 'message')} read, "
        f"{plural(report.reconnects, 'reconnection')}",
    )


@app.command("list")
def list_command(
    ctx: typer.Context,
    *,
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind",
            help="Only this kind: hard, soft, complaint, unsubscribe, auto-reply, unrecognised.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="How many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Recent reports, newest first, including the unrecognised mail kept for a person.

    Example: newsletter bounces list --kind unrecognised
    """
    st = state(ctx)
    with Session(st.engine()) as session:
        entries = recent(session, kind, limit)
    if as_json:
        print_json([entry.as_dict() for entry in entries])
        return
    table = Table(show_edge=False, pad_edge=False)
    columns = ("id", "received", "kind", "status", "recipient", "action", "issue", "diagnostic")
    for column in columns:
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(
            str(e.id),
            e.received_at.strftime("%Y-%m-%d %H:%M"),
            e.kind,
            e.status or "",
            e.recipient or "",
            e.action,
            e.issue or "",
            (e.diagnostic or "")[:80],
        )
    out.print(table)


@app.command("show")
def show_command(
    ctx: typer.Context,
    report_id: Annotated[int, typer.Argument(metavar="ID", help="A report's id (bounces list).")],
) -> None:
    """One report, and the whole message when it was kept (mail nobody could read).

    Example: newsletter bounces show 12
    """
    st = state(ctx)
    with Session(st.engine()) as session:
        entry, raw = one(session, report_id)
    for name, value in entry.as_dict().items():
        out.print(f"{name}: {'' if value is None else value}")
    if raw:
        out.print("")
        out.out(raw.decode("utf-8", "replace"), highlight=False)


@app.command("reprocess")
def reprocess_command(
    ctx: typer.Context,
    *,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="DATE", help="Only reports received from this date."),
    ] = None,
    apply: Annotated[
        bool,
        typer.Option("--apply", help="Do it [default: say what would change]."),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per line per change.")
    ] = False,
) -> None:
    """Judge the stored bounce reports again by today's rules (a better classifier corrects
    its past calls): a person a report wrongly bounced comes back; one it missed is bounced
    now unless they came back since. Says what it would do unless --apply.

    Example: newsletter bounces reprocess --since 2026-11-01
    Example: newsletter bounces reprocess --since 2026-11-01 --apply
    """
    st = state(ctx)
    config = st.config()
    start = None
    if since:
        start = parse_datetime(since, config.timezone)
        if start is None:
            raise UsageError(f"bad --since {since!r}: use a date, e.g. 2026-11-01")
    with session_scope(st.engine()) as session:
        changes = reprocess(session, start, apply=apply)
        if not apply:
            session.rollback()
    if as_json:
        for change in changes:
            out.print(json.dumps(change.as_dict()), highlight=False)
    else:
        for c in changes:
            out.print(
                f"report {c.report_id} ({c.received_at[:16]}, {c.recipient or 'no recipient'}): "
                f"{c.was} -> {c.now}: {c.change}: {c.why}",
            )
    counts = {kind: sum(c.change == kind for c in changes) for kind in ("lift", "bounce")}
    verb = "done" if apply else "would be done; run again with --apply"
    err.print(
        f"{plural(len(changes), 'report')} judged differently today: "
        f"{counts['lift']} bounce(s) lifted, {counts['bounce']} new bounce(s) ({verb})",
    )
