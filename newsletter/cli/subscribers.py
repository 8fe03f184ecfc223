"""`newsletter subscribers ...`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlmodel import Session

from newsletter.atomic_files import atomic_open
from newsletter.audience import lifecycle, subscribers
from newsletter.audience.csv_files import export_csv, import_csv
from newsletter.cli.output import err, out, plural, print_json, shown
from newsletter.cli.state import State, state
from newsletter.db import session_scope
from newsletter.delivery import welcome
from newsletter.delivery.send import runner, send_welcomes
from newsletter.errors import DONE, FAILED, UsageError

app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Subscribers: add, import, export, list."
)
Email = Annotated[str, typer.Argument(help="The subscriber's email address.")]
Newsletter = Annotated[str | None, typer.Option(help="The newsletter [default: the config's].")]
StatusOption = Annotated[
    str | None, typer.Option("--status", help="pending, active, unsubscribed, bounced, complained")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Welcome = Annotated[
    bool,
    typer.Option(
        "--welcome",
        help="Send each new subscriber the welcome mail (as a confirmation does) [default: none].",
    ),
]
Reopen = Annotated[
    bool,
    typer.Option(
        help="Also reactivate people who unsubscribed, bounced or complained (only when they "
        "asked you to: it is logged).",
    ),
]


def _newsletter(st: State, name: str | None) -> str:
    config = st.config()
    if name and name not in (config.name, config.newsletter_id):
        raise UsageError(
            f"--newsletter {name!r}: {config.path} configures {config.newsletter_id!r}; "
            "use --config for another newsletter"
        )
    return config.newsletter_id


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="subscribers")


@app.command("add")
def add(
    ctx: typer.Context,
    email: Email,
    *,
    name: Annotated[str | None, typer.Option(help="The subscriber's name.")] = None,
    newsletter: Newsletter = None,
    reopen: Reopen = False,
    welcome_mail: Welcome = False,
) -> None:
    """Add an active subscriber (you vouch for their consent; the web form double-opts-in).

    Example: newsletter subscribers add olena@example.org --name Olena --welcome
    """
    st = state(ctx)
    list_name = _newsletter(st, newsletter)
    with session_scope(st.engine()) as session:
        outcome = subscribers.add(session, list_name, email, name=name, source="cli", reopen=reopen)
        key = subscribers.parse_address(email).key
        welcomed = welcome_mail and outcome in ("added", "reopened") and _queue(st, session, [key])
    messages = {
        "added": f"Added {email}",
        "updated": f"Updated {email}",
        "unchanged": f"{email} is already subscribed",
        "suppressed": f"{email} is suppressed and cannot be added",
        "closed": f"{email} unsubscribed (or bounced); only they can subscribe again "
        "(or you, with --reopen, if they asked you to)",
        "reopened": f"Reopened {email}'s subscription (--reopen)",
    }
    out.print(messages[outcome])
    if outcome in ("suppressed", "closed"):
        raise typer.Exit(FAILED)
    if welcomed:
        _send_welcomes(st)


def _queue(st: State, session: Session, keys: list[str]) -> int:
    """Welcomes for these new subscribers, in the transaction that adds them."""
    config = st.config()
    if not config.welcome.enabled:
        raise UsageError(
            "--welcome: the welcome mail is off in this newsletter's config "
            "([welcome] enabled = false)"
        )
    return welcome.queue(session, config.newsletter_id, keys)


def _send_welcomes(st: State) -> None:
    """The welcomes just queued, through the config's transport; what stays (a transport
    that is down) waits for `newsletter send --due`."""
    report = send_welcomes(st.config(), st.engine(), st.key(), st.transports())
    left = report.exit_code != DONE
    err.print(
        f"Welcome mail: sent {report.sent}"
        + (f", waiting {report.deferred + report.unknown}: see 'newsletter deliveries show "
           "welcome' (send --due retries)" if left else ""),
    )  # fmt: skip


@app.command("import")
def import_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A CSV file with an 'email' column.")],
    *,
    newsletter: Newsletter = None,
    dry_run: Annotated[bool, typer.Option(help="Check and count, change nothing.")] = False,
    reopen: Reopen = False,
    welcome_mail: Welcome = False,
    as_json: AsJson = False,
) -> None:
    """Import subscribers from CSV: every rejected row is reported, the valid ones are
    imported together. Exit 0 when every row was taken, 1 when some were rejected, 2 when the
    file cannot be read.

    Example: newsletter subscribers import list.csv --dry-run
    Example: newsletter subscribers import signups.csv --welcome
    """
    st = state(ctx)
    list_name = _newsletter(st, newsletter)
    with session_scope(st.engine()) as session:
        report = import_csv(session, list_name, file, dry_run=dry_run, reopen=reopen)
        if welcome_mail and not dry_run:
            report.welcomed = _queue(st, session, report.joined)
    if as_json:
        print_json(report.as_dict())
    else:
        for rejected in report.rejected:
            err.print(f"line {rejected.row}: {rejected.value!r}: {rejected.reason}")
        prefix = "Would import" if dry_run else "Imported"
        out.print(
            f"{prefix} {report.imported}, updated {report.updated}, unchanged "
            f"{report.unchanged}, duplicates {report.duplicates}, suppressed "
            f"{report.suppressed}"
            + (f" ({report.closed} of them left: only they can come back)" if report.closed else "")
            + (f", reopened {report.reopened}" if report.reopened else "")
            + f", rejected {len(report.rejected)}",
        )
    if report.welcomed:
        _send_welcomes(st)
    raise typer.Exit(FAILED if report.rejected else DONE)


@app.command("export")
def export(
    ctx: typer.Context,
    *,
    status: StatusOption = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", metavar="FILE", help="File [default: stdout].")
    ] = None,
    newsletter: Newsletter = None,
) -> None:
    """Export subscribers as UTF-8 CSV, safe to open in a spreadsheet.

    Example: newsletter subscribers export --status active --out active.csv
    """
    st = state(ctx)
    list_name = _newsletter(st, newsletter)
    wanted = subscribers.check_status(status)
    with Session(st.engine()) as session:
        if out_file is None:
            count = export_csv(session, list_name, sys.stdout, wanted)
        else:
            with atomic_open(out_file, private=True) as handle:
                count = export_csv(session, list_name, handle, wanted)
    err.print(f"{plural(count, 'subscriber')} exported")


@app.command("list")
def list_command(
    ctx: typer.Context,
    *,
    status: StatusOption = None,
    newsletter: Newsletter = None,
    as_json: AsJson = False,
) -> None:
    """List subscribers.

    Example: newsletter subscribers list --status pending --json
    """
    st = state(ctx)
    list_name = _newsletter(st, newsletter)
    wanted = subscribers.check_status(status)
    with Session(st.engine()) as session:
        rows = [
            {
                "email": p.email,
                "name": p.name,
                "status": s.status,
                "source": p.source,
                "created_at": s.created_at.isoformat(),
            }
            for p, s in subscribers.listing(session, list_name, wanted)
        ]
    if as_json:
        print_json(rows)
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("email", "name", "status", "source", "created_at"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            *(str(row[c] or "") for c in ("email", "name", "status", "source", "created_at"))
        )
    out.print(table)


@app.command("count")
def count(ctx: typer.Context, *, newsletter: Newsletter = None, as_json: AsJson = False) -> None:
    """Count subscribers by status.

    Example: newsletter subscribers count
    """
    st = state(ctx)
    list_name = _newsletter(st, newsletter)
    with Session(st.engine()) as session:
        found = subscribers.counts(session, list_name)
    if as_json:
        print_json(found)
        return
    for status, number in found.items():
        out.print(f"{status:<13}{number:>8}")


@app.command("show")
def show(ctx: typer.Context, email: Email, *, as_json: AsJson = False) -> None:
    """Show one subscriber, with their personal unsubscribe link and every subscription of
    theirs in this database.

    Example: newsletter subscribers show olena@example.org --json
    """
    st = state(ctx)
    config = st.config()
    with Session(st.engine()) as session:
        detail = subscribers.profile(session, config, st.key(), email)
    if as_json:
        print_json(detail)
        return
    for label, value in detail.items():
        if label != "subscriptions":
            out.print(f"{label}: {shown(value)}")
    # A line per list: one line of every list's fields ran together unreadably.
    out.print("subscriptions:")
    for entry in detail["subscriptions"]:
        since = entry.get("confirmed_at") or ""
        left = entry.get("unsubscribed_at")
        out.print(
            f"  {entry['newsletter']} ({entry.get('name') or ''}, {entry.get('language') or ''}):"
            f" {entry['status']}" + (f" since {since}" if since else "")
            + (f", left {left}" if left else ""),
        )  # fmt: skip


@app.command("unsubscribe")
def unsubscribe(ctx: typer.Context, email: Email, *, newsletter: Newsletter = None) -> None:
    """Unsubscribe someone (say, who asked by reply).

    Example: newsletter subscribers unsubscribe olena@example.org
    """
    st = state(ctx)
    list_name = _newsletter(st, newsletter)
    with session_scope(st.engine()) as session:
        person = subscribers.require(session, email)
        assert person.id is not None
        changed = subscribers.unsubscribe(session, person.id, list_name)
    out.print(f"Unsubscribed {email}" if changed else f"{email} was not subscribed")


@app.command("remove")
def remove(ctx: typer.Context, email: Email) -> None:
    """Erase a person's data (right to erasure), keeping only a suppression entry (a hash of
    the address) so no import adds them again.

    Example: newsletter subscribers remove olena@example.org
    """
    st = state(ctx)
    with session_scope(st.engine()) as session:
        subscribers.erase(session, email)
    out.print(f"Erased {email}; the address stays suppressed")


@app.command("unsuppress")
def unsuppress(
    ctx: typer.Context,
    email: Email,
    *,
    reason: Annotated[
        str, typer.Option("--reason", metavar="TEXT", help="Why (logged; shown by 'show').")
    ],
    who: Annotated[
        str | None,
        typer.Option("--as", metavar="WHO", help="Who lifts it [default: the system user]."),
    ] = None,
) -> None:
    """Lift a bounce or complaint suppression that was wrong (never an erasure): the
    address is mailed again and the subscriptions it closed are active again; logged with
    who and why, and shown by 'subscribers show'.

    Example: newsletter subscribers unsuppress olena@example.org --reason "she wrote: the box works"
    """
    st = state(ctx)
    key = subscribers.parse_address(email).key
    with session_scope(st.engine()) as session:
        lift = lifecycle.unsuppress(session, key, by=(who or "").strip() or runner(), why=reason)
    out.print(f"Lifted the {lift.reason} suppression of {email}")


@app.command("suppress")
def suppress(
    ctx: typer.Context,
    email: Email,
    *,
    reason: Annotated[str, typer.Option(help="Why: manual, bounced, complained...")] = "manual",
) -> None:
    """Add an address to the suppression list: it is never mailed or re-added.

    Example: newsletter subscribers suppress abuse@example.org --reason complained
    """
    st = state(ctx)
    with session_scope(st.engine()) as session:
        subscribers.suppress(session, email, reason)
    out.print(f"Suppressed {email}")
