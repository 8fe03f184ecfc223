"""Sending an approved issue through the ledger (see ledger.py for its states).

One run: take the issue's run lock (or leave: another process is sending it), turn rows a
crashed run left in `sending` into `unknown`, write the audience once, then repeat: claim a
batch (committed as `sending`), let a pool of N connections send it at the allowed rate,
record each outcome. A worker (`worker=` its identity, PostgreSQL only) takes the lock in
shared mode and sends beside other workers: each claims its own rows (FOR UPDATE SKIP
LOCKED), marked with its identity, and turns into `unknown` only rows of workers that are
gone (locks.sender_alive). The message for each recipient is the issue's template with their
placeholders filled (message.IssueTemplate), never a re-render.

Errors that are not about a recipient (refused connection, 421, 454, a sender refusal, a
lost connection) make that connection back off before it reconnects, blame nobody, and after
`pause_after` of them in a row pause the whole send, leaving the remaining rows queued for a
later run (exit 75). A configuration error (bad credentials, no TLS where TLS is required)
stops the send at once (exit 2).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from newsletter.audience.subscribers import parse_address
from newsletter.audience.tokens import signed_url
from newsletter.config import Config
from newsletter.delivery import ledger
from newsletter.delivery.ledger import Claimed, Outcome, RetryPolicy
from newsletter.delivery.locks import SenderIdentity, run_lock, sender_alive
from newsletter.delivery.message import IssueTemplate, dkim_signer, issue_template, sender
from newsletter.delivery.transport import Transport
from newsletter.editorial.approval import is_stale
from newsletter.editorial.issue_file import issue_path, read_issue
from newsletter.editorial.render import render_file
from newsletter.errors import (
    DONE,
    FAILED,
    TEMPFAIL,
    USAGE,
    ConfigError,
    IdentityLost,
    NewsletterError,
    NotFoundError,
    TransportError,
    UsageError,
)
from newsletter.models import ApprovedIssue


@dataclass(frozen=True)
class SendOptions:
    connections: int = 4
    rate: float | None = None
    pause_after: int = 10
    backoff: float = 0.5
    retry: RetryPolicy = field(default_factory=RetryPolicy)


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
    finished: bool = False
    ledger: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def exit_code(self) -> int:
        if self.locked:
            return 0
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


class RateLimiter:
    """At most `rate` sends a second across every connection, evenly spaced."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            slot = max(self.next, now)
            self.next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


def classify(error: TransportError, delivery_id: int) -> tuple[Outcome, bool]:
    """(the row's outcome, whether the fault is the connection's rather than the recipient's).
    smtplib raises one class for 4xx and 5xx: the code decides."""
    code, text = error.code, str(error)
    if error.stage in ("connect", "envelope") or code in (421, 454):
        return Outcome(delivery_id, "requeue", code, text), True
    if error.stage == "after-dot":
        return Outcome(delivery_id, "unknown", code, text), True
    if error.stage == "before-dot":
        return Outcome(delivery_id, "deferred", code, text), True
    if code is not None and 500 <= code < 600:
        return Outcome(delivery_id, "failed", code, text), False
    return Outcome(delivery_id, "deferred", code, text), code is None


class Pool:
    """N threads, each with its own connection, fed claimed rows through a queue."""

    def __init__(
        self,
        make_transport: Callable[[], Transport],
        build: Callable[[Claimed], bytes],
        envelope_from: str,
        options: SendOptions,
    ) -> None:
        self.jobs: queue.Queue[Claimed | None] = queue.Queue()
        self.results: queue.Queue[Outcome] = queue.Queue()
        self.build, self.envelope_from, self.options = build, envelope_from, options
        self.make_transport = make_transport
        self.rate = RateLimiter(options.rate) if options.rate else None
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.errors_in_a_row = 0
        self.paused: str | None = None
        self.fatal: NewsletterError | None = None
        self.threads = [
            threading.Thread(target=self._work, name=f"smtp-{n}", daemon=True)
            for n in range(max(1, options.connections))
        ]
        for thread in self.threads:
            thread.start()

    def _work(self) -> None:
        transport: Transport | None = None
        failures = 0
        while True:
            job = self.jobs.get()
            if job is None:
                break
            if self.stop.is_set():
                self.results.put(Outcome(job.id, "requeue"))
                continue
            if self.rate:
                self.rate.wait()
            try:
                transport = transport or self.make_transport()
                transport.send(self.envelope_from, job.email, self.build(job))
                outcome, connection_fault = Outcome(job.id, "sent", 250), False
            except ConfigError as error:
                self.fatal = error
                self.stop.set()
                outcome, connection_fault = Outcome(job.id, "requeue"), False
            except TransportError as error:
                outcome, connection_fault = classify(error, job.id)
            except Exception as error:  # a bug must stop the send, not hang it
                self.fatal = NewsletterError(f"sending stopped: {type(error).__name__}: {error}")
                self.stop.set()
                outcome, connection_fault = Outcome(job.id, "requeue"), False
            self._count(connection_fault, outcome)
            self.results.put(outcome)
            if connection_fault:
                failures += 1
                # wait() rather than sleep(): a pause or a fatal error ends the back-off.
                self.stop.wait(min(self.options.backoff * 2 ** min(failures - 1, 6), 30.0))
            else:
                failures = 0
        if transport is not None:
            transport.close()

    def _count(self, connection_fault: bool, outcome: Outcome) -> None:
        with self.lock:
            self.errors_in_a_row = self.errors_in_a_row + 1 if connection_fault else 0
            if self.errors_in_a_row >= self.options.pause_after and not self.paused:
                self.paused = (
                    f"paused after {self.errors_in_a_row} errors in a row: {outcome.error}"
                )
                self.stop.set()

    def close(self) -> None:
        for _ in self.threads:
            self.jobs.put(None)
        for thread in self.threads:
            thread.join()


def find_approved(session: Session, config: Config, slug_or_path: str) -> ApprovedIssue:
    slug = slug_or_path
    if slug.endswith(".md") or "/" in slug:
        slug = read_issue(issue_path(config, slug_or_path)).slug
    row = session.exec(select(ApprovedIssue).where(ApprovedIssue.slug == slug)).first()
    if row is None:
        raise NotFoundError(f"issue {slug} is not approved: run 'newsletter issue approve {slug}'")
    return row


def send_issue(
    config: Config,
    engine: Engine,
    key: bytes,
    slug_or_path: str,
    make_transport: Callable[[], Transport],
    options: SendOptions | None = None,
    *,
    worker: SenderIdentity | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> SendReport:
    """Send (or resume) one approved issue. `on_progress(done, total)` after each outcome.
    `worker`: this sender's identity (locks.sender_identity), to share the issue."""
    options = options or SendOptions()
    started = time.monotonic()
    if worker is not None and engine.dialect.name != "postgresql":
        raise UsageError(WORKER_NEEDS_POSTGRESQL)
    alive = None if worker is None else partial(_peer_alive, engine, worker.name)
    with Session(engine, expire_on_commit=False) as session:
        issue = find_approved(session, config, slug_or_path)
        report = SendReport(slug=issue.slug, worker=worker.name if worker else None)
        if issue.enqueued_at is None and is_stale(config, issue):
            raise UsageError(
                f"{issue.slug} was edited after approval: run 'newsletter issue approve "
                f"{issue.slug}' again before sending"
            )
    with run_lock(engine, f"send:{report.slug}", shared=worker is not None) as mine:
        if not mine:
            report.locked = True
            return report
        with Session(engine, expire_on_commit=False) as session:
            issue = find_approved(session, config, report.slug)
            assert issue.id is not None
            report.recovered = ledger.recover(session, issue.id, alive)
            report.enqueued = ledger.enqueue(session, issue)
            template = approved_template(config, issue)
            total = sum(ledger.counts(session, issue.id)[s] for s in ("queued", "deferred"))
            _run(
                config,
                key,
                session,
                issue,
                template,
                make_transport,
                options,
                report,
                total,
                on_progress,
                worker,
            )
            if alive is not None:
                # A peer that died while this worker sent left its rows in `sending`.
                report.recovered += ledger.recover(session, issue.id, alive)
            report.finished = ledger.finish_if_done(session, issue)
            report.ledger = ledger.counts(session, issue.id)
            if worker is not None:
                report.sending_elsewhere = report.ledger["sending"]
    report.elapsed = round(time.monotonic() - started, 3)
    return report


WORKER_NEEDS_POSTGRESQL = (
    "--worker needs PostgreSQL (NEWSLETTER_DATABASE_URL=postgresql+psycopg://...): on SQLite "
    "run one sender and raise --connections instead"
)


def _peer_alive(engine: Engine, me: str, identity: str) -> bool:
    return identity == me or sender_alive(engine, identity)


def approved_template(config: Config, issue: ApprovedIssue) -> IssueTemplate:
    """The message every recipient's bytes are filled from: the approved copy, dated now."""
    return issue_template(
        config,
        slug=issue.slug,
        subject=issue.subject,
        html=issue.html,
        text=issue.text,
        date=datetime.now(UTC),
        dkim=dkim_signer(config),
        feedback_id=config.feedback_id,
    )


def _run(
    config: Config,
    key: bytes,
    session: Session,
    issue: ApprovedIssue,
    template: IssueTemplate,
    make_transport: Callable[[], Transport],
    options: SendOptions,
    report: SendReport,
    total: int,
    on_progress: Callable[[int, int], None] | None,
    worker: SenderIdentity | None,
) -> None:
    assert issue.id is not None
    view_url = config.archive_url(issue.slug)

    def build(row: Claimed) -> bytes:
        unsubscribe = signed_url(
            config.base_url, key, "unsubscribe", issue.newsletter, row.token_id
        )
        return template.render(
            email=row.email,
            email_key=row.email_key,
            name=row.name,
            unsubscribe_url=unsubscribe,
            view_url=view_url,
        )

    pool = Pool(make_transport, build, sender(config).addr_spec, options)
    # Keep every connection busy and a short queue behind them: claim the next batch once
    # the queue is down to half a batch. A short queue is what lets several workers finish
    # together (rows claimed by one cannot go out through another's idle connections), and
    # bounds what a crash can leave in doubt: at most connections + 1.5 batches in
    # `sending`. 32 rows at a time keeps the claims' cost small on a fast relay.
    batch = max(32, options.connections)
    refill = options.connections + batch // 2
    done = in_flight = 0
    exhausted = False
    pending: list[Outcome] = []
    try:
        while True:
            if not exhausted and not pool.stop.is_set() and in_flight <= refill:
                if worker is not None and not _still_mine(worker, pool):
                    exhausted = True
                    continue
                claimed, skipped = ledger.claim(
                    session,
                    issue.id,
                    issue.newsletter,
                    batch,
                    claimed_by=worker.name if worker else None,
                )
                report.skipped += skipped
                for row in claimed:
                    pool.jobs.put(row)
                in_flight += len(claimed)
                exhausted = not claimed and not skipped
                continue
            if in_flight == 0:
                break
            outcome = pool.results.get()
            in_flight -= 1
            pending.append(outcome)
            _tally(report, outcome)
            done += 1
            if on_progress:
                on_progress(done, total)
            if len(pending) >= 50 or in_flight == 0:
                ledger.record(session, pending, options.retry)
                # Rows handed back (a 421, a refused connection) are claimable again.
                exhausted = exhausted and not any(o.kind == "requeue" for o in pending)
                pending = []
    finally:
        pool.close()
        while not pool.results.empty():
            pending.append(pool.results.get())
        ledger.record(session, pending, options.retry)
    report.paused = pool.paused
    if pool.fatal is not None:
        raise pool.fatal


def _still_mine(worker: SenderIdentity, pool: Pool) -> bool:
    """Whether the worker may claim more: with its identity lock gone, peers may already be
    turning its rows into `unknown`. If not, the send pauses (exit 75) after what is in
    flight."""
    try:
        worker.confirm()
    except IdentityLost as error:
        pool.paused = str(error)
        return False
    return True


def _tally(report: SendReport, outcome: Outcome) -> None:
    if outcome.kind in ("sent", "deferred", "failed", "unknown"):
        setattr(report, outcome.kind, getattr(report, outcome.kind) + 1)


def due_issues(session: Session, now: datetime | None = None) -> list[ApprovedIssue]:
    """Approved issues whose time has come, and sends left unfinished, oldest first."""
    moment = now or datetime.now(UTC)
    rows = session.exec(select(ApprovedIssue).where(col(ApprovedIssue.finished_at).is_(None))).all()
    due = [
        row
        for row in rows
        if row.enqueued_at is not None or (row.send_at is not None and row.send_at <= moment)
    ]
    return sorted(due, key=lambda row: row.send_at or row.approved_at)


def audience_preview(session: Session, issue: ApprovedIssue) -> list[str]:
    return [person.email for person in ledger.audience(session, issue.newsletter)]


def send_tests(
    config: Config,
    session: Session,
    slug_or_path: str,
    addresses: list[str],
    make_transport: Callable[[], Transport],
) -> int:
    """Test sends of the issue as its file is now (before or after approval), marked
    [Test] in the subject; the ledger is not touched."""
    issue, rendered = render_file(config, session, slug_or_path)
    template = issue_template(
        config,
        slug=f"test-{issue.slug}-{time.time_ns()}",
        subject=f"[Test] {issue.subject}",
        html=rendered.html.source,
        text=rendered.text.source,
        date=datetime.now(UTC),
        dkim=dkim_signer(config),
        feedback_id=config.feedback_id,
    )
    transport = make_transport()
    try:
        for raw in addresses:
            address = parse_address(raw)
            data = template.render(
                email=address.email,
                email_key=address.key,
                name=None,
                unsubscribe_url=f"{config.base_url}/unsubscribe/test",
                view_url=config.archive_url(issue.slug),
            )
            transport.send(sender(config).addr_spec, address.email, data)
    finally:
        transport.close()
    return len(addresses)
