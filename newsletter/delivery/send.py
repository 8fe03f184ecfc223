"""The send engine: a frozen row (an approved issue, a welcome, any kind of mail) through
the ledger (see ledger.py for its states).

The engine knows no kind of mail: the row's mailing (mailing.py, listed in mailings.py) says
whether it may go, settles it before the first message and gives the template every
reader's bytes are filled from. A send is a `SendRun`: take the row's run lock (or leave:
another process is sending it), recover what a stopped run left (claimed rows queued again,
started ones `unknown`), write the audience once, then let the connections (connections.py)
send the rows the ledger writer (writer.py) claims and starts for them, each outcome
committed before it is counted. The message for each recipient is the row's template with
their placeholders filled (message.IssueTemplate), never a re-render.

A worker (`--worker`, PostgreSQL only) takes the lock in shared mode and sends beside other
workers: each claims its own rows (FOR UPDATE SKIP LOCKED), marked with its identity, and
recovers only rows of workers that are gone (locks.sender_alive). A worker whose share is
done stays until the peers' rows are settled: when a peer dies, its claimed rows come back
to be sent and its started ones are reported, by whichever worker is still there.

`send()` is what the command runs (one issue, or every due one); `resolve()` settles the
rows in doubt; `ledger_view()` is what `deliveries show` prints. Exit codes follow from the
reports alone (`SendReport.exit_code`, `DueRun.exit_code`).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

from sqlalchemy.engine import Engine
from sqlmodel import Session

from newsletter.audience.tokens import make_token
from newsletter.config import Config
from newsletter.db import Cursor
from newsletter.delivery import ledger, mailings, welcome
from newsletter.delivery.connections import Connections, SendOptions
from newsletter.delivery.issue_mailing import due_issues
from newsletter.delivery.ledger import Claimed, Outcome
from newsletter.delivery.locks import SenderIdentity, run_lock, sender_alive, sender_identity
from newsletter.delivery.message import IssueTemplate, sender
from newsletter.delivery.pace import claimable, quota_left
from newsletter.delivery.row_tokens import ReturnAddresses
from newsletter.delivery.transport import Transport, wire_address
from newsletter.delivery.writer import LedgerWriter
from newsletter.editorial import signoff
from newsletter.editorial.issue_file import issue_path, read_issue
from newsletter.editorial.render import personal_urls
from newsletter.errors import (
    DONE,
    FAILED,
    TEMPFAIL,
    USAGE,
    NotFoundError,
    UsageError,
)
from newsletter.models import ApprovedIssue

__all__ = ["SendOptions", "SendReport", "DueRun", "SendRun", "send", "resolve", "ledger_view"]

# How often a worker whose share is done looks again at its peers' rows.
PEER_POLL = 0.5


@dataclass
class SendReport:
    slug: str
    enqueued: int = 0
    recovered: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    unknown: int = 0
    skipped: int = 0
    locked: bool = False
    worker: str | None = None
    # Rows other workers are sending as this one finishes: theirs to settle, not work left.
    sending_elsewhere: int = 0
    paused: str | None = None
    # Seconds the send waited for a throttling provider or an unreachable server, and why.
    waited: float = 0.0
    waited_for: str | None = None
    finished: bool = False
    ledger: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def exit_code(self) -> int:
        if self.locked:
            return DONE
        left = sum(self.ledger.get(state, 0) for state in ledger.OPEN)
        if self.paused or left > self.sending_elsewhere:
            return TEMPFAIL
        if self.ledger.get("failed", 0) or self.ledger.get("unknown", 0):
            return FAILED
        return DONE

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"exit_code": self.exit_code}


@dataclass
class DueRun:
    """`send --due`: a report per issue sent or resumed, and the issues that could not be
    (edited after approval, say), which do not hold up the others."""

    transport: str
    reports: list[SendReport] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """The worst of the run: a usage error, then try-later, then failures."""
        codes = [report.exit_code for report in self.reports]
        if self.errors:
            return USAGE
        return next((code for code in (TEMPFAIL, FAILED) if code in codes), DONE)

    def as_dict(self) -> dict[str, Any]:
        return {
            "issues": [report.as_dict() for report in self.reports],
            "errors": [{"slug": slug, "error": error} for slug, error in self.errors.items()],
            "transport": self.transport,
        }


class Watcher(Protocol):
    """What a front end is told as a send goes: to draw progress and print reports."""

    def begin(self, slug: str, total: int | None) -> None: ...

    def advance(self, done: int) -> None: ...

    def end(self, report: SendReport) -> None: ...

    def refused(self, slug: str, error: UsageError) -> None: ...


@dataclass(frozen=True)
class SendRequest:
    """What `newsletter send` was asked: one issue (`slug`) or every due one (`due`)."""

    slug: str | None = None
    due: bool = False
    worker: bool = False
    options: SendOptions = field(default_factory=SendOptions)
    transport: str = ""  # the transport as it may be shown, for the JSON report


WORKER_NEEDS_POSTGRESQL = (
    "--worker needs PostgreSQL (NEWSLETTER_DATABASE_URL=postgresql+psycopg://...): on SQLite "
    "run one sender and raise --connections instead"
)


def send(
    config: Config,
    engine: Engine,
    key: bytes,
    make_transport: Callable[[], Transport],
    request: SendRequest,
    watcher: Watcher | None = None,
) -> SendReport | DueRun:
    """Send one approved issue, or every due one; the report says what happened and which
    exit code that is. A due issue that cannot be sent (edited after approval) is reported
    and the others go on."""
    if request.due == bool(request.slug):
        raise UsageError("give an issue SLUG, or --due (not both)")
    if request.worker:
        _check_worker(engine)
    identity: AbstractContextManager[SenderIdentity | None] = (
        sender_identity(engine) if request.worker else nullcontext()
    )
    with identity as worker:

        def run(slug: str) -> SendReport:
            return SendRun(
                config, engine, key, slug, make_transport, request.options, worker, watcher
            ).execute()

        if request.slug:
            return run(request.slug)
        with Session(engine) as session:
            slugs = mailings.due(config, session)
        due = DueRun(request.transport)
        for slug in slugs:
            try:
                due.reports.append(run(slug))
            except UsageError as error:
                due.errors[slug] = str(error)
                if watcher:
                    watcher.refused(slug, error)
        return due


def send_welcomes(
    config: Config,
    engine: Engine,
    key: bytes,
    make_transport: Callable[[], Transport],
    *,
    pause_after: int = SendOptions.pause_after,
) -> SendReport:
    """The newsletter's waiting welcome mails (welcome.py), now: after a confirmation (the
    web, with one try: `pause_after=1`) or an import with --welcome."""
    retry = ledger.RetryPolicy(give_up_after=timedelta(hours=config.retry_hours))
    options = SendOptions(connections=1, pause_after=pause_after, retry=retry)
    report = send(config, engine, key, make_transport, SendRequest(welcome.SLUG, options=options))
    assert isinstance(report, SendReport)
    return report


def return_addresses(config: Config, key: bytes, issue_id: int, newsletter: str) -> ReturnAddresses:
    me = sender(config)
    bounce = config.bounce_address
    return ReturnAddresses(
        key=key,
        newsletter=newsletter,
        issue_id=issue_id,
        domain=me.domain,
        default_sender=me.addr_spec,
        bounce_address=wire_address(bounce) if bounce else None,
    )


def runner() -> str:
    """Who runs this send: the system user at this host (cron's, or the editor's)."""
    return f"{signoff.system_user()}@{socket.gethostname()}"[:400]


def _check_worker(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        raise UsageError(WORKER_NEEDS_POSTGRESQL)


# Gmail's and Yahoo's line: a sender whose complaints reach 0.3 % of what it delivered is
# refused. Judged once enough has been delivered for one complaint not to decide it.
COMPLAINT_RATE = 0.003
COMPLAINT_MIN_DELIVERED = 1000


def complaint_pause(cursor: Cursor, issue_id: int | None) -> str | None:
    """Why the send should pause before claiming more (checked before each claim, so a
    resumed send and a long one both stop), or None: this issue's complaints heard back so
    far at or above COMPLAINT_RATE of its delivered messages."""
    if issue_id is None:
        return None
    (row,) = cursor.rows(
        "SELECT (SELECT COUNT(*) FROM deliveries WHERE issue_id = ? AND state = 'sent'),"
        " (SELECT COUNT(*) FROM feedback_reports WHERE issue_id = ? AND kind = 'complaint')",
        issue_id,
        issue_id,
    )
    delivered, complaints = int(row[0] or 0), int(row[1] or 0)
    if delivered < COMPLAINT_MIN_DELIVERED or complaints < COMPLAINT_RATE * delivered:
        return None
    return (
        f"paused: {complaints} complaints for {delivered} delivered "
        f"({100 * complaints / delivered:.2f} %, at or above Gmail's and Yahoo's 0.3 %): find "
        "out why readers call it spam (consent, frequency, content) before sending on"
    )


class SendRun:
    """One sender's run of one issue. Its parts: the ledger writer (claims, starts and
    outcomes, committed in groups), the connections, and the report they fill."""

    def __init__(
        self,
        config: Config,
        engine: Engine,
        key: bytes,
        slug_or_path: str,
        make_transport: Callable[[], Transport],
        options: SendOptions,
        worker: SenderIdentity | None = None,
        watcher: Watcher | None = None,
    ) -> None:
        if worker is not None:
            _check_worker(engine)
        self.config, self.engine, self.key = config, engine, key
        self.make_transport, self.options = make_transport, options
        self.worker, self.watcher = worker, watcher
        self.alive = None if worker is None else partial(_peer_alive, engine, worker.name)
        with Session(engine, expire_on_commit=False) as session:
            issue = find_approved(session, config, slug_or_path)
            mailings.mailing_for(issue).gate(config, session, issue)
        self.issue = issue
        self.mailing = mailings.mailing_for(issue)
        self.view_url = config.archive_url(issue.slug)
        self.report = SendReport(slug=issue.slug, worker=worker.name if worker else None)

    def execute(self) -> SendReport:
        started = time.monotonic()
        report = self.report
        with run_lock(self.engine, f"send:{report.slug}", shared=self.worker is not None) as mine:
            if mine:
                self._send()
            else:
                report.locked = True
        report.elapsed = round(time.monotonic() - started, 3)
        if self.watcher:
            self.watcher.end(report)
        return report

    def _send(self) -> None:
        """Under the run lock: recover, enqueue, send, and settle with the peers."""
        report = self.report
        with Session(self.engine, expire_on_commit=False) as session:
            issue = self.issue = find_approved(session, self.config, report.slug)
            assert issue.id is not None
            report.recovered = ledger.recover(session, issue.id, self.alive)
            report.enqueued = ledger.enqueue(session, issue)
            if issue.enqueued_at is not None and issue.sent_by is None:
                issue.sent_by = runner()  # the issue's history says who ran its send
                session.add(issue)
                session.commit()
            tally = ledger.counts(session, issue.id)
            self.view_url = self.mailing.prepare(self.config, session, issue)
        template = self.mailing.template(self.config, self.engine, self.key, issue)
        # A worker's share is not known beforehand: it counts its own messages.
        total = None if self.worker else tally["queued"] + tally["deferred"]
        if self.watcher:
            self.watcher.begin(report.slug, total)
        self._deliver(template)
        while self.worker is not None and not report.paused and self._peers_unsettled():
            self._deliver(template)
        with Session(self.engine, expire_on_commit=False) as session:
            report.finished = ledger.finish_if_done(session, issue)
            report.ledger = ledger.counts(session, issue.id)
        if self.worker is not None:
            report.sending_elsewhere = report.ledger["claimed"] + report.ledger["sending"]

    def _deliver(self, template: IssueTemplate) -> None:
        """Send until the ledger has nothing more for this sender, or the send pauses."""
        issue, options = self.issue, self.options
        assert issue.id is not None
        view_url = self.view_url
        base_url, key, newsletter = self.config.base_url, self.key, issue.newsletter

        returns = return_addresses(self.config, key, issue.id, newsletter)
        per_reader = self.config.tracking.per_subscriber

        def build(row: Claimed) -> bytes:
            token = make_token(key, "unsubscribe", newsletter, row.token_id)
            mark = returns.unsubscribe_mark(row.id)
            unsubscribe, preferences = personal_urls(base_url, token, mark)
            return template.render(
                email=row.email,
                email_key=row.email_key,
                name=row.name,
                unsubscribe_url=unsubscribe,
                view_url=view_url,
                message_id=returns.message_id(row.id),
                unsubscribe_mailto=returns.mailto(mark),
                reader=returns.reader(row.id) if per_reader else "",
                preferences_url=preferences,
            )

        def envelope(row: Claimed) -> str:
            return returns.envelope_from(row.id)

        writer = LedgerWriter(
            self.engine,
            issue.id,
            issue.newsletter,
            halt=threading.Event(),
            policy=options.retry,
            # Claimed rows are not in doubt, but a short queue is what lets several workers
            # finish together (rows claimed by one cannot go out through another's idle
            # connections); 32 at a time keeps the claims' cost small on a fast relay.
            batch=max(32, 2 * options.connections),
            claimed_by=self.worker.name if self.worker else None,
            confirm=self.worker.confirm if self.worker else None,
            on_written=self._written,
            budget=self._quota(),
            quota=lambda cursor: claimable(cursor, self.config, datetime.now(UTC)),
            guard=lambda cursor: complaint_pause(cursor, issue.id),
        )
        connections = Connections(writer, self.make_transport, envelope, build, options)
        if writer.budget == 0:  # nothing to send today: no connection opened
            writer.close()
            self.report.paused = writer.paused = (
                "the day's quota is reached; send --due goes on tomorrow"
            )
            return
        try:
            connections.run()
        finally:
            writer.close()
        self.report.paused = self.report.paused or connections.paused or writer.paused
        waits = connections.waited
        self.report.waited = round(self.report.waited + sum(waits.values()), 1)
        if waits:
            longest = sorted(waits.items(), key=lambda item: -item[1])
            self.report.waited_for = ", ".join(f"{why} {s:.1f} s" for why, s in longest)
        if connections.fatal is not None:
            raise connections.fatal
        if writer.error is not None:
            raise writer.error

    def _quota(self) -> int | None:
        """What the day's quota leaves this run (pace.py), None for no limit."""
        with Session(self.engine) as session:
            return quota_left(session, self.config, datetime.now(UTC))

    def _written(self, outcomes: list[Outcome], skipped: int) -> None:
        """After each commit, in the writer's thread: count what is now durable."""
        report = self.report
        report.skipped += skipped
        for outcome in outcomes:
            if outcome.kind in ("sent", "deferred", "failed", "unknown"):
                setattr(report, outcome.kind, getattr(report, outcome.kind) + 1)
        if self.watcher and outcomes:
            self.watcher.advance(report.sent + report.deferred + report.failed + report.unknown)

    def _peers_unsettled(self) -> bool:
        """A worker whose share is done: whether to send again (a peer died and its claimed
        rows are queued again, or rows were handed back). Waits while live peers still hold
        rows, so that the last worker standing notices a peer that dies at the end."""
        assert self.issue.id is not None
        while True:
            with Session(self.engine) as session:
                self.report.recovered += ledger.recover(session, self.issue.id, self.alive)
                tally = ledger.counts(session, self.issue.id)
            if tally["queued"]:
                return True
            if not tally["claimed"] and not tally["sending"]:
                return False
            time.sleep(PEER_POLL)


def _peer_alive(engine: Engine, me: str, identity: str) -> bool:
    return identity == me or sender_alive(engine, identity)


@dataclass
class LedgerView:
    """`deliveries show`: an issue's counts per state and, optionally, its rows in one."""

    slug: str
    finished: bool
    counts: dict[str, int]
    rows: list[dict[str, Any]]
    # What waits, and why, when something does.
    waiting: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _waiting(session: Session, config: Config, counts: dict[str, int]) -> str | None:
    queued, deferred = counts.get("queued", 0), counts.get("deferred", 0)
    if not queued and not deferred:
        return None
    parts = []
    if queued:
        left = quota_left(session, config, datetime.now(UTC))
        why = (
            "the day's quota is reached; send --due goes on tomorrow"
            if left == 0
            else "the next send --due takes them"
        )
        parts.append(f"{queued} queued: {why}")
    if deferred:
        parts.append(f"{deferred} deferred: retried at their next attempt time")
    return "; ".join(parts)


def ledger_view(config: Config, engine: Engine, slug: str, state: str | None) -> LedgerView:
    if state and state not in ledger.STATES:
        raise UsageError(f"unknown state {state!r}: use one of {', '.join(ledger.STATES)}")
    with Session(engine) as session:
        issue = find_approved(session, config, slug)
        assert issue.id is not None
        rows = ledger.rows(session, issue.id, state) if state else []
        counts = ledger.counts(session, issue.id)
        return LedgerView(
            slug=issue.slug,
            finished=issue.finished_at is not None,
            counts=counts,
            waiting=_waiting(session, config, counts),
            rows=[
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
            ],
        )


def resolve(config: Config, engine: Engine, slug: str, *, resend: bool) -> tuple[str, int]:
    """Settle an issue's `unknown` rows: queue them again (`resend`: some readers may get
    two) or count them sent (some may have got none). (The issue's slug, rows changed.)"""
    with Session(engine) as session:
        issue = find_approved(session, config, slug)
        assert issue.id is not None
        return issue.slug, ledger.resolve(session, issue.id, resend=resend)


def resend(
    config: Config, engine: Engine, slug: str, state: str, *, apply: bool
) -> tuple[str, int, list[tuple[str, str]]]:
    """`deliveries resend`: (the issue's slug, rows queued again, who was left out)."""
    if state not in ledger.RESENDABLE:
        raise UsageError(f"--state {state!r}: use one of {', '.join(ledger.RESENDABLE)}")
    with Session(engine) as session:
        issue = find_approved(session, config, slug)
        assert issue.id is not None
        count, left = ledger.resend(session, issue.id, issue.newsletter, state, apply=apply)
        return issue.slug, count, left


def find_approved(session: Session, config: Config, slug_or_path: str) -> ApprovedIssue:
    """The newsletter's approved issue, or its welcome row (`welcome`: its ledger is shown,
    settled and sent as an issue's)."""
    slug = slug_or_path
    if slug.endswith(".md") or "/" in slug:
        slug = read_issue(issue_path(config, slug_or_path)).slug
    row = mailings.find(session, config, slug)
    if row is None and not issue_path(config, slug).is_file():
        raise NotFoundError(
            f"no issue {slug}: there is no issue file {issue_path(config, slug)} and nothing "
            "approved by that name; see 'newsletter issue list'"
        )
    if row is None:
        how = "request-approval" if config.require_approval else "approve"
        raise NotFoundError(f"issue {slug} is not approved: run 'newsletter issue {how} {slug}'")
    return row


@dataclass
class AudiencePreview:
    """`send --dry-run`: who each issue would go to now; nothing is written."""

    audiences: dict[str, list[str]]

    def as_dict(self) -> dict[str, Any]:
        return {
            slug: {"count": len(people), "recipients": people}
            for slug, people in self.audiences.items()
        }


def audience_preview(config: Config, engine: Engine, request: SendRequest) -> AudiencePreview:
    if request.due == bool(request.slug):
        raise UsageError("give an issue SLUG, or --due (not both)")
    with Session(engine) as session:
        issues = (
            due_issues(session, config.newsletter_id)
            if request.due
            else [find_approved(session, config, request.slug or "")]
        )
        return AudiencePreview(
            {
                issue.slug: [person.email for person in ledger.audience(session, issue.newsletter)]
                for issue in issues
            }
        )
