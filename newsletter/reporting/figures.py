"""An issue's report: delivery, what came back, who left, and what readers clicked.

Everything here is a count: the ledger's states, the reports heard back
(feedback_reports), the click counts per link and hour (click_counts), and, only with
per-subscriber tracking, how many distinct readers clicked. Nothing names a person.
`delivered` is what the relay accepted and did not come back (sent and complained);
rates are against it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from newsletter.config import Config
from newsletter.db import read_time
from newsletter.delivery import ledger
from newsletter.errors import NotFoundError
from newsletter.models import ApprovedIssue, ClickCount, FeedbackReport, IssueLink, ReaderClick


@dataclass
class ArticleFigures:
    url: str
    title: str
    clicks: int
    readers: int | None  # distinct readers, per-subscriber tracking only
    share: float  # of all the issue's clicks
    rate: float  # clicks per delivered message


@dataclass
class IssueFigures:
    slug: str
    subject: str
    sent_at: str | None
    recipients: int
    sent: int
    delivered: int
    deferred: int
    failed: int
    in_doubt: int
    skipped: int
    bounced: int
    bounced_hard: int
    bounced_soft: int
    complained: int
    unsubscribed: int
    clicks: int
    click_rate: float
    articles: list[ArticleFigures] = field(default_factory=list)
    clicks_by_hour: list[tuple[str, int]] = field(default_factory=list)
    opens: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["clicks_by_hour"] = [{"hour": h, "clicks": n} for h, n in self.clicks_by_hour]
        return data


def issue_figures(session: Session, config: Config, slug: str) -> IssueFigures:
    issue = session.exec(
        select(ApprovedIssue).where(
            ApprovedIssue.slug == slug, ApprovedIssue.newsletter == config.newsletter_id
        )
    ).first()
    if issue is None or issue.id is None:
        raise NotFoundError(f"no approved issue {slug!r}: see newsletter issue list")
    return _figures(session, config, issue)


def recent_figures(session: Session, config: Config, count: int = 6) -> list[IssueFigures]:
    """The last `count` issues that went out, oldest first (a trend reads left to right)."""
    issues = session.exec(
        select(ApprovedIssue)
        .where(
            ApprovedIssue.newsletter == config.newsletter_id,
            ApprovedIssue.kind == "issue",  # the welcome row is no issue of the trend
            col(ApprovedIssue.enqueued_at).is_not(None),
        )
        .order_by(col(ApprovedIssue.enqueued_at).desc())
        .limit(max(1, count))
    ).all()
    return [_figures(session, config, issue) for issue in reversed(issues)]


def _figures(session: Session, config: Config, issue: ApprovedIssue) -> IssueFigures:
    assert issue.id is not None
    states = ledger.counts(session, issue.id)
    # A message heard of twice (a DSN and a provider's event) counts once.
    heard = {
        (kind, action): int(number)
        for kind, action, number in session.execute(
            sa.select(
                col(FeedbackReport.kind),
                col(FeedbackReport.action),
                sa.func.count(
                    sa.distinct(
                        sa.func.coalesce(col(FeedbackReport.delivery_id), -col(FeedbackReport.id))
                    )
                ),
            )
            .where(col(FeedbackReport.issue_id) == issue.id)
            .group_by(col(FeedbackReport.kind), col(FeedbackReport.action))
        ).all()
    }
    soft = sum(n for (kind, action), n in heard.items() if kind == "soft" and action in (
        "counted", "bounced"))  # fmt: skip
    hard = heard.get(("hard", "bounced"), 0)
    unsubscribed = heard.get(("unsubscribe", "unsubscribed"), 0)
    delivered = states["sent"] + states["complained"]
    links = session.exec(
        select(IssueLink).where(IssueLink.issue_id == issue.id).order_by(col(IssueLink.index))
    ).all()
    counted = sa.and_(col(ClickCount.issue_id) == issue.id, col(ClickCount.index) >= 0)
    by_link: dict[int, int] = dict(
        session.execute(
            sa.select(col(ClickCount.index), sa.func.sum(col(ClickCount.count)))
            .where(counted)
            .group_by(col(ClickCount.index))
        ).all()
    )
    readers: dict[int, int] | None = (
        dict(
            session.execute(
                sa.select(
                    col(ReaderClick.index),
                    sa.func.count(sa.distinct(col(ReaderClick.subscriber_id))),
                )
                .where(col(ReaderClick.issue_id) == issue.id)
                .group_by(col(ReaderClick.index))
            ).all()
        )
        if config.tracking.per_subscriber
        else None
    )
    total = sum(int(n) for n in by_link.values())
    articles = [
        ArticleFigures(
            url=link.url,
            title=link.title or link.url,
            clicks=int(by_link.get(link.index, 0)),
            readers=int(readers.get(link.index, 0)) if readers is not None else None,
            share=round(int(by_link.get(link.index, 0)) / total, 4) if total else 0.0,
            rate=round(int(by_link.get(link.index, 0)) / delivered, 4) if delivered else 0.0,
        )
        for link in links
    ]
    hours = [
        (_hour(hour), int(number))
        for hour, number in session.execute(
            sa.select(col(ClickCount.hour), sa.func.sum(col(ClickCount.count)))
            .where(counted)
            .group_by(col(ClickCount.hour))
            .order_by(col(ClickCount.hour))
        ).all()
    ]
    opens = None
    if config.tracking.opens:
        split = {
            bool(machine): int(number)  # SQLite gives 0/1, PostgreSQL booleans
            for machine, number in session.execute(
                sa.select(col(ClickCount.machine), sa.func.sum(col(ClickCount.count)))
                .where(col(ClickCount.issue_id) == issue.id, col(ClickCount.index) == -1)
                .group_by(col(ClickCount.machine))
            ).all()
        }
        machine, other = split.get(True, 0), split.get(False, 0)
        opens = {
            "machine": machine,
            "other": other,
            "note": "Opens are unreliable: mail apps that block images never count, and "
            "Apple Mail Privacy Protection and image proxies fetch every image whether "
            "anyone reads the mail (counted as machine opens). Clicks are the better signal.",
        }
    sent_at = issue.enqueued_at or issue.send_at
    return IssueFigures(
        slug=issue.slug,
        subject=issue.subject,
        sent_at=sent_at.isoformat() if sent_at else None,
        recipients=sum(states.values()),
        sent=states["sent"] + states["bounced"] + states["complained"],
        delivered=delivered,
        deferred=states["deferred"],
        failed=states["failed"],
        in_doubt=states["unknown"] + states["sending"],
        skipped=states["skipped"],
        bounced=hard + soft,
        bounced_hard=hard,
        bounced_soft=soft,
        complained=heard.get(("complaint", "complained"), 0),
        unsubscribed=unsubscribed,
        clicks=total,
        click_rate=round(total / delivered, 4) if delivered else 0.0,
        articles=articles,
        clicks_by_hour=hours,
        opens=opens,
    )


def _hour(value: object) -> str:
    moment = read_time(value)
    return moment.strftime("%Y-%m-%dT%H:00Z") if isinstance(moment, datetime) else str(value)
