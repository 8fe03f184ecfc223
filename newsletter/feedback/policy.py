"""What a verified report changes, once.

- hard bounce: the ledger row `bounced`, the address suppressed, the person's open
  subscriptions `bounced` (the address is dead for every list);
- soft bounce: counted; soft bounces on `soft_limit` distinct issues within `soft_days`,
  with no delivery in between that did not bounce, make it a hard one;
- complaint: the row `complained`, the subscription `complained`, the address suppressed;
- mailto unsubscribe: as the one-click POST (the subscription `unsubscribed`).

All of them are reversible only by the person (a new confirmation; subscribers.py). Every
report is stored with a fingerprint of its message and place, so reading the same mail
twice, from a folder copied back or an IMAP move that failed halfway, changes nothing the
second time. Reports nothing proves are ours (`unverified`) are stored and change nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlmodel import Session, col, select

from newsletter.audience.subscribers import key_hash
from newsletter.config import Config
from newsletter.feedback.identify import Target, proven_rows, target
from newsletter.feedback.parse import Kind, Parsed, Report
from newsletter.models import Delivery, FeedbackReport, Subscriber, Subscription, Suppression

Action = Literal["bounced", "counted", "complained", "unsubscribed", "none", "unverified"]
ACTIONS: tuple[Action, ...] = (
    "bounced",
    "counted",
    "complained",
    "unsubscribed",
    "none",
    "unverified",
)
MAX_KEPT = 256_000  # bytes of an unrecognised message kept for a person


@dataclass(frozen=True)
class Handled:
    """One report and what it did: a line of `bounces process --json`."""

    source: str
    recipient: str | None
    kind: Kind
    status: str | None
    action: Action
    duplicate: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fingerprint(message_digest: str, index: int) -> str:
    return hashlib.sha256(f"{message_digest}\x00{index}".encode()).hexdigest()


def apply(
    session: Session,
    config: Config,
    key: bytes,
    parsed: Parsed,
    *,
    origin: str,
    source: str,
    digest: str,
    raw: bytes | None = None,
    now: datetime | None = None,
) -> list[Handled]:
    """Store and act on every report of one message. Does not commit."""
    moment = now or datetime.now(UTC)
    rows = proven_rows(session, parsed.traces)
    handled = []
    for report in parsed.reports:
        print_ = fingerprint(digest, report.index)
        seen = session.exec(
            select(FeedbackReport).where(FeedbackReport.fingerprint == print_)
        ).first()
        if seen is not None:
            handled.append(
                Handled(source, report.recipient, report.kind, report.status, "none", True)
            )
            continue
        found = None
        if report.kind not in ("auto-reply", "unrecognised"):
            found = target(session, key, config.key, report, parsed.traces, rows)
        action = _act(session, config, report, found, moment)
        session.add(
            FeedbackReport(
                fingerprint=print_,
                received_at=moment,
                origin=origin,
                source=source[:500],
                kind=report.kind,
                status=report.status,
                recipient=report.recipient,
                action=action,
                diagnostic=report.diagnostic,
                issue_id=found.issue_id if found else None,
                delivery_id=found.delivery.id if found and found.delivery else None,
                subscriber_id=found.subscriber_id if found else None,
                raw=raw[:MAX_KEPT] if raw is not None and report.kind == "unrecognised" else None,
            )
        )
        session.flush()
        handled.append(Handled(source, report.recipient, report.kind, report.status, action))
    return handled


def _act(
    session: Session, config: Config, report: Report, found: Target | None, now: datetime
) -> Action:
    if report.kind in ("auto-reply", "unrecognised"):
        return "none"
    if found is None:
        return "unverified"
    if report.kind == "hard":
        _bounce(session, found, now)
        return "bounced"
    if report.kind == "soft":
        if not report.counts:
            return "none"
        if _soft_limit_reached(session, config, found, now):
            _bounce(session, found, now)
            return "bounced"
        return "counted"
    if report.kind == "complaint":
        _close(session, found, config.key, "complained", now)
        _suppress(session, found, "complained", now)
        _mark_row(session, found, "complained", now)
        return "complained"
    # unsubscribe: as the one-click POST, which neither suppresses nor touches the ledger
    _close(session, found, config.key, "unsubscribed", now)
    return "unsubscribed"


def _bounce(session: Session, found: Target, now: datetime) -> None:
    _suppress(session, found, "bounced", now)
    _mark_row(session, found, "bounced", now)
    if found.subscriber_id is not None:
        session.execute(
            sa.update(Subscription)
            .where(
                col(Subscription.subscriber_id) == found.subscriber_id,
                col(Subscription.status).in_(["active", "pending"]),
            )
            .values(
                status="bounced",
                unsubscribed_at=sa.func.coalesce(Subscription.unsubscribed_at, now),
            )
        )


def _close(session: Session, found: Target, newsletter: str, status: str, now: datetime) -> None:
    if found.subscriber_id is None:
        return
    session.execute(
        sa.update(Subscription)
        .where(
            col(Subscription.subscriber_id) == found.subscriber_id,
            col(Subscription.newsletter) == newsletter,
            col(Subscription.status).in_(["active", "pending"]),
        )
        .values(status=status, unsubscribed_at=sa.func.coalesce(Subscription.unsubscribed_at, now))
    )


def _suppress(session: Session, found: Target, reason: str, now: datetime) -> None:
    email_key = found.delivery.email_key if found.delivery else None
    if email_key is None and found.subscriber_id is not None:
        person = session.get(Subscriber, found.subscriber_id)
        email_key = person.email_key if person else None
    if email_key is None:
        return
    digest = key_hash(email_key)
    if session.get(Suppression, digest) is None:
        session.add(Suppression(key_hash=digest, email=email_key, reason=reason, created_at=now))
        session.flush()


def _mark_row(session: Session, found: Target, state: str, now: datetime) -> None:
    """The ledger row of a message that was accepted and then came back."""
    if found.delivery is None:
        return
    session.execute(
        sa.update(Delivery)
        .where(
            col(Delivery.id) == found.delivery.id,
            col(Delivery.state).in_(["sent", "unknown", "bounced", "deferred", "failed"]),
        )
        .values(state=state, updated_at=now)
    )


def _soft_limit_reached(session: Session, config: Config, found: Target, now: datetime) -> bool:
    """Whether this soft bounce (not yet stored) brings the person to the limit: distinct
    issues with a soft bounce within the window, after their last delivery that did not
    bounce."""
    if found.subscriber_id is None:
        return False
    settings = config.bounces
    bounced_rows = select(FeedbackReport.delivery_id).where(
        col(FeedbackReport.subscriber_id) == found.subscriber_id,
        col(FeedbackReport.kind).in_(["soft", "hard"]),
        col(FeedbackReport.delivery_id).is_not(None),
    )
    last_clean = session.exec(
        select(sa.func.max(Delivery.sent_at)).where(
            col(Delivery.subscriber_id) == found.subscriber_id,
            col(Delivery.state) == "sent",
            col(Delivery.id).not_in(bounced_rows),
            *([col(Delivery.id) != found.delivery.id] if found.delivery else []),
        )
    ).one()
    query = (
        select(FeedbackReport.issue_id)
        .join(Delivery, col(Delivery.id) == col(FeedbackReport.delivery_id))
        .where(
            col(FeedbackReport.subscriber_id) == found.subscriber_id,
            col(FeedbackReport.kind) == "soft",
            col(FeedbackReport.action).in_(["counted", "bounced"]),
            col(FeedbackReport.received_at) >= now - timedelta(days=settings.soft_days),
        )
    )
    if last_clean is not None:
        query = query.where(col(Delivery.sent_at) > last_clean)
    issues = {issue for issue in session.exec(query).all() if issue is not None}
    if found.issue_id is not None:
        issues.add(found.issue_id)
    this_one_counts = (
        found.delivery is None
        or last_clean is None
        or (found.delivery.sent_at is None or found.delivery.sent_at > last_clean)
    )
    return this_one_counts and len(issues) + (found.issue_id is None) >= settings.soft_limit
