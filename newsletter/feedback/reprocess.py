"""`bounces reprocess`: the stored bounce reports judged again by today's rules, so that a
better classifier corrects the calls it got wrong before, within the policy.

Each stored hard or soft report is judged again from what was kept of it (its status and
the server's words: classify.severity). A change is:

- hard, now soft (`lift`): the bounce it caused is undone when it alone caused it (no other
  report about the person still stands as hard, and the address is suppressed `bounced`):
  the suppression is lifted and logged (lifecycle.unsuppress, by "bounces reprocess"), the
  subscriptions it closed are active again, the ledger row counts as sent;
- soft, now hard (`bounce`): the person is bounced now, as `bounces process` would have
  done, unless they came back since the report (a lift, a confirmation, or a delivery that
  did not bounce, after it): reprocessing never re-suppresses someone who came back;
- anything else is only `relabel`led (the report's kind corrected, nothing acted on).

A dry run (the default) changes nothing and says what `--apply` would do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from sqlmodel import Session, col, select

from newsletter.audience import lifecycle
from newsletter.dates import utc_now
from newsletter.db import Cursor
from newsletter.delivery import ledger
from newsletter.feedback.classify import severity
from newsletter.models import Delivery, FeedbackReport, Subscriber, Subscription, SuppressionLift

Change = Literal["lift", "bounce", "relabel", "kept"]
BY = "bounces reprocess"


@dataclass(frozen=True)
class Corrected:
    """One report whose call changes: a line of `bounces reprocess`."""

    report_id: int
    received_at: str
    recipient: str | None
    was: str
    now: str
    change: Change
    why: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def reprocess(session: Session, since: datetime | None, *, apply: bool) -> list[Corrected]:
    """Every stored hard or soft report (since `since`) whose call today's rules change,
    oldest first, and what that does; with `apply`, done, in the caller's transaction
    (which this does not commit)."""
    query = select(FeedbackReport).where(col(FeedbackReport.kind).in_(["hard", "soft"]))
    if since is not None:
        query = query.where(col(FeedbackReport.received_at) >= since)
    changed: list[Corrected] = []
    for report in session.exec(query.order_by(col(FeedbackReport.id))).all():
        judged = severity(report.status, report.diagnostic or "")
        now = "hard" if judged == "hard" else "soft"
        if now == report.kind:
            continue
        change, why = _decide(session, report, now)
        assert report.id is not None
        changed.append(
            Corrected(
                report.id,
                report.received_at.isoformat(),
                report.recipient,
                report.kind,
                now,
                change,
                why,
            )
        )
        if apply:
            _apply(session, report, now, change, why)
    return changed


def _decide(session: Session, report: FeedbackReport, now: str) -> tuple[Change, str]:
    person = session.get(Subscriber, report.subscriber_id) if report.subscriber_id else None
    if person is None or report.action == "unverified":
        return "relabel", "no ledger row proved it ours: nothing was acted on"
    if now == "soft":
        if report.action != "bounced":
            return "relabel", "it did not bounce anyone"
        suppression = lifecycle.suppression_of(session, person.email_key)
        if suppression is None:
            return "relabel", "the address is no longer suppressed"
        if suppression.reason != "bounced":
            return "kept", f"the address is suppressed {suppression.reason!r}, not by a bounce"
        others = session.exec(
            select(FeedbackReport.id, FeedbackReport.status, FeedbackReport.diagnostic).where(
                FeedbackReport.subscriber_id == person.id,
                FeedbackReport.kind == "hard",
                FeedbackReport.action == "bounced",
                FeedbackReport.id != report.id,
            )
        ).all()
        if any(severity(status, words or "") == "hard" for _, status, words in others):
            return "kept", "another report still stands as a hard bounce"
        return "lift", f"report {report.id} is a soft bounce by today's rules"
    came_back = _came_back(session, person, report.received_at)
    if came_back:
        return "kept", f"they came back since ({came_back}): not suppressed again"
    if lifecycle.suppression_of(session, person.email_key) is not None:
        return "relabel", "the address is suppressed already"
    return "bounce", f"report {report.id} is a hard bounce by today's rules"


def _came_back(session: Session, person: Subscriber, after: datetime) -> str | None:
    """Why the person counts as back since `after`: a lifted suppression, a confirmation,
    or a delivery that did not bounce."""
    lifted = session.exec(
        select(SuppressionLift.id).where(
            SuppressionLift.key_hash == lifecycle.key_hash(person.email_key),
            col(SuppressionLift.lifted_at) > after,
        )
    ).first()
    if lifted is not None:
        return "a suppression lifted"
    confirmed = session.exec(
        select(Subscription.id).where(
            Subscription.subscriber_id == person.id, col(Subscription.confirmed_at) > after
        )
    ).first()
    if confirmed is not None:
        return "a confirmation"
    delivered = session.exec(
        select(Delivery.id).where(
            Delivery.subscriber_id == person.id,
            Delivery.state == "sent",
            col(Delivery.sent_at) > after,
        )
    ).first()
    return "a delivery that did not bounce" if delivered is not None else None


def _apply(session: Session, report: FeedbackReport, now: str, change: Change, why: str) -> None:
    report.kind = now
    if change == "lift":
        person = session.get(Subscriber, report.subscriber_id)
        assert person is not None
        lifecycle.unsuppress(session, person.email_key, by=BY, why=why)
        report.action = "none"
        if report.delivery_id is not None:
            ledger.unreturned(Cursor.of(session), report.delivery_id, utc_now())
    elif change == "bounce":
        person = session.get(Subscriber, report.subscriber_id)
        assert person is not None
        cursor = Cursor.of(session)
        lifecycle.bounce(cursor, person.email_key, person.id, cursor.stamp(utc_now()))
        report.action = "bounced"
        if report.delivery_id is not None:
            ledger.returned(cursor, report.delivery_id, "bounced", utc_now())
    session.add(report)
    session.flush()
