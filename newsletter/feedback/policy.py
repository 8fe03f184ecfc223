"""What a verified report changes, once.

- hard bounce: the ledger row `bounced`, the address suppressed, the person's open
  subscriptions `bounced` (the address is dead for every list);
- soft bounce: counted; soft bounces on `soft_limit` distinct issues within `soft_days`,
  with no delivery in between that did not bounce, make it a hard one;
- complaint: the row `complained`, the subscription `complained`, the address suppressed;
- mailto unsubscribe: as the one-click POST (the subscription `unsubscribed`).

Nothing here reopens a closed subscription (subscribers.py: only the person can). Every
report is stored with a fingerprint: a verified one by what it means (its kind and the
ledger row it is about), so the same bounce read twice, from a folder copied back, an IMAP
move that failed halfway, or an old report sent again with a header changed, acts once;
an unverified one by its message's bytes. Reports nothing proves are ours (`unverified`)
are stored and change nothing.
The statements go through the driver cursor (db.Cursor): through the
ORM they cost more than reading the mail.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from sqlmodel import Session

from newsletter.audience import lifecycle
from newsletter.config import Config
from newsletter.db import Cursor, read_time
from newsletter.delivery import ledger
from newsletter.feedback.identify import Row, proven_rows, target
from newsletter.feedback.parse import Parsed, Report, ReportKind
from newsletter.untrusted import stored

Action = Literal["bounced", "counted", "complained", "unsubscribed", "none", "unverified"]
ACTIONS: tuple[Action, ...] = get_args(Action)
MAX_KEPT = 256_000  # bytes of an unrecognised message kept for a person
MAX_DIAGNOSTIC = 2000


@dataclass(frozen=True)
class Handled:
    """One report and what it did: a line of `bounces process --json`."""

    source: str
    recipient: str | None
    kind: ReportKind
    status: str | None
    action: Action
    duplicate: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fingerprint(message_digest: str, index: int) -> str:
    """A report nothing proves is ours, by its bytes: reading the same file twice is
    recognised, and it changes nothing either way."""
    return hashlib.sha256(f"{message_digest}\x00{index}".encode()).hexdigest()


def meaning(report: Report, found: Row) -> str:
    """A verified report by what it means, not by its bytes: its kind, whether it counts,
    and the ledger row it is about. An old bounce sent again with a header added, or the
    same bounce from the provider's webhook and the mailbox, acts once (a delay warning
    and the failure that follows are two reports; so are a bounce and a complaint)."""
    text = f"meaning\x00{report.kind}\x00{report.counts}\x00{found.id}"
    return hashlib.sha256(text.encode()).hexdigest()


def apply(
    session: Session,
    config: Config,
    parsed: Parsed,
    *,
    origin: str,
    source: str,
    digest: str,
    raw: bytes | None = None,
    now: datetime | None = None,
) -> list[Handled]:
    """Store and act on every report of one message. Does not commit. Every text stored
    is made valid for both databases (untrusted.stored): what a message holds cannot make
    the insert fail."""
    moment = now or datetime.now(UTC)
    cursor = Cursor.of(session)
    rows = proven_rows(session, parsed.traces)
    planned: list[tuple[Report, Row | None, str]] = []
    for report in parsed.reports:
        found = None
        if report.kind not in ("auto-reply", "unrecognised"):
            found = target(report, parsed.traces, rows, config.bounces.proof_days, moment)
        print_ = meaning(report, found) if found else fingerprint(digest, report.index)
        planned.append((report, found, print_))
    seen = {row[0] for row in cursor.rows(
        "SELECT fingerprint FROM feedback_reports WHERE fingerprint IN ?",
        [print_ for _, _, print_ in planned],
    )}  # fmt: skip
    handled = []
    source = stored(source, 500) or ""
    for report, found, print_ in planned:
        recipient = stored(report.recipient, 320)
        status = stored(report.status, 20)
        if print_ in seen:
            handled.append(Handled(source, recipient, report.kind, status, "none", True))
            continue
        action = _act(cursor, config, report, found, moment)
        kept = raw[:MAX_KEPT] if raw is not None and report.kind == "unrecognised" else None
        cursor.count(
            "INSERT INTO feedback_reports (fingerprint, received_at, origin, source, kind,"
            " status, recipient, action, diagnostic, issue_id, delivery_id, subscriber_id, raw)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            print_,
            cursor.stamp(moment),
            origin,
            source,
            report.kind,
            status,
            recipient,
            action,
            stored(report.diagnostic, MAX_DIAGNOSTIC),
            found.issue_id if found else None,
            found.id if found else None,
            found.subscriber_id if found else None,
            kept,
        )
        seen.add(print_)
        handled.append(Handled(source, recipient, report.kind, status, action))
    return handled


def record_unsubscribe(session: Session, delivery_id: int, subscriber_id: int) -> None:
    """A one-click unsubscribe from the link in one issue's message: stored as a report, so
    the issue's report counts who left after it. Only the person's own message counts."""
    cursor = Cursor.of(session)
    found = cursor.rows(
        "SELECT issue_id FROM deliveries WHERE id = ? AND subscriber_id = ?",
        delivery_id,
        subscriber_id,
    )
    if not found:
        return
    cursor.count(
        "INSERT INTO feedback_reports (fingerprint, received_at, origin, source, kind, action,"
        " issue_id, delivery_id, subscriber_id) VALUES (?, ?, 'web', 'one-click', 'unsubscribe',"
        " 'unsubscribed', ?, ?, ?) ON CONFLICT (fingerprint) DO NOTHING",
        fingerprint(f"web-unsubscribe:{delivery_id}", 0),
        cursor.stamp(datetime.now(UTC)),
        found[0][0],
        delivery_id,
        subscriber_id,
    )


def _act(
    cursor: Cursor, config: Config, report: Report, found: Row | None, now: datetime
) -> Action:
    if report.kind in ("auto-reply", "unrecognised"):
        return "none"
    if found is None:
        return "unverified"
    if report.kind == "hard":
        _bounce(cursor, found, now)
        return "bounced"
    if report.kind == "soft":
        if not report.counts:
            return "none"
        if _soft_limit_reached(cursor, config, found, now):
            _bounce(cursor, found, now)
            return "bounced"
        return "counted"
    if report.kind == "complaint":
        lifecycle.complain(
            cursor, found.email_key, found.subscriber_id, config.newsletter_id, cursor.stamp(now)
        )
        ledger.returned(cursor, found.id, "complained", now)
        return "complained"
    # unsubscribe: as the one-click POST, which neither suppresses nor touches the ledger
    if found.subscriber_id is not None:
        lifecycle.close(
            cursor, found.subscriber_id, "unsubscribed", cursor.stamp(now), config.newsletter_id
        )
    return "unsubscribed"


def _bounce(cursor: Cursor, found: Row, now: datetime) -> None:
    """As a 5.1.x during the send (lifecycle.bounce), and the row marked too."""
    lifecycle.bounce(cursor, found.email_key, found.subscriber_id, cursor.stamp(now))
    ledger.returned(cursor, found.id, "bounced", now)


def _soft_limit_reached(cursor: Cursor, config: Config, found: Row, now: datetime) -> bool:
    """Whether this soft bounce (not yet stored) brings the person to the limit: distinct
    issues with a soft bounce within the window, after their last delivery that did not
    bounce."""
    if found.subscriber_id is None:
        return False
    settings = config.bounces
    clean = cursor.rows(
        "SELECT MAX(sent_at) FROM deliveries WHERE subscriber_id = ? AND state = 'sent'"
        " AND id <> ? AND id NOT IN (SELECT delivery_id FROM feedback_reports"
        " WHERE subscriber_id = ? AND kind IN ('soft', 'hard') AND delivery_id IS NOT NULL)",
        found.subscriber_id,
        found.id,
        found.subscriber_id,
    )
    last_clean = read_time(clean[0][0]) if clean else None
    counted = cursor.rows(
        "SELECT DISTINCT r.issue_id FROM feedback_reports r JOIN deliveries d"
        " ON d.id = r.delivery_id WHERE r.subscriber_id = ? AND r.kind = 'soft'"
        " AND r.action IN ('counted', 'bounced') AND r.received_at >= ? AND d.sent_at > ?",
        found.subscriber_id,
        cursor.stamp(now - timedelta(days=settings.soft_days)),
        cursor.stamp(last_clean or datetime(1970, 1, 1, tzinfo=UTC)),
    )
    issues = {row[0] for row in counted if row[0] is not None}
    if last_clean is not None and found.sent_at is not None and found.sent_at <= last_clean:
        return False  # an old bounce, from before a delivery that did not bounce
    issues.add(found.issue_id)
    return len(issues) >= settings.soft_limit
