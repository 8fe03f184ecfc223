"""What `bounces list` and `bounces show` read: the stored reports, newest first."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from newsletter.errors import NotFoundError, UsageError
from newsletter.feedback.parse import KINDS
from newsletter.models import ApprovedIssue, FeedbackReport


@dataclass(frozen=True)
class Entry:
    id: int
    received_at: datetime
    origin: str
    source: str
    kind: str
    status: str | None
    recipient: str | None
    action: str
    issue: str | None
    diagnostic: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"received_at": self.received_at.isoformat()}


def recent(session: Session, kind: str | None = None, limit: int = 50) -> list[Entry]:
    if kind is not None and kind not in KINDS:
        raise UsageError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
    query = _with_slug().order_by(col(FeedbackReport.id).desc()).limit(max(1, limit))
    if kind is not None:
        query = query.where(col(FeedbackReport.kind) == kind)
    return [_entry(report, slug) for report, slug in session.exec(query).all()]


def one(session: Session, report_id: int) -> tuple[Entry, bytes | None]:
    found = session.exec(_with_slug().where(col(FeedbackReport.id) == report_id)).first()
    if found is None:
        raise NotFoundError(f"no report {report_id}: see newsletter bounces list")
    report, slug = found
    return _entry(report, slug), report.raw


def _with_slug() -> Any:
    """Reports with the slug of the issue each is about (none for mail of no issue)."""
    return select(FeedbackReport, ApprovedIssue.slug).join(
        ApprovedIssue, col(ApprovedIssue.id) == col(FeedbackReport.issue_id), isouter=True
    )


def _entry(report: FeedbackReport, slug: str | None) -> Entry:
    assert report.id is not None
    return Entry(
        id=report.id,
        received_at=report.received_at,
        origin=report.origin,
        source=report.source,
        kind=report.kind,
        status=report.status,
        recipient=report.recipient,
        action=report.action,
        issue=slug,
        diagnostic=report.diagnostic,
    )
