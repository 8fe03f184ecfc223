"""The weekly issue as a mailing (mailing.py): sent only as approved (not edited since, and
signed off by enough approvers under `require_approval`), its links counted, due at its
send time."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from newsletter.config import Config
from newsletter.delivery.mailing import approved_template
from newsletter.delivery.message import IssueTemplate
from newsletter.delivery.tracking import Link, register
from newsletter.editorial import signoff
from newsletter.editorial.approval import is_stale, issue_row
from newsletter.errors import NewsletterError, UsageError
from newsletter.models import ApprovedIssue

KIND = "issue"


def plural_approvers(count: int) -> str:
    return "an approver" if count == 1 else f"{count} approvers"


class IssueMailing:
    kind = KIND

    def find(self, session: Session, config: Config, slug: str) -> ApprovedIssue | None:
        return issue_row(session, config.newsletter_id, slug)

    def gate(self, config: Config, session: Session, row: ApprovedIssue) -> None:
        if row.enqueued_at is not None:
            return  # a send under way goes on as it began
        if is_stale(config, row):
            raise UsageError(
                f"{row.slug} was edited after approval: run 'newsletter issue approve "
                f"{row.slug}' again before sending"
            )
        if config.require_approval and not signoff.signed_off(session, config, row):
            needed = config.approvals_needed
            raise UsageError(
                f"{row.slug} has no sign-off from {plural_approvers(needed)} "
                "([newsletter] require_approval): run 'newsletter issue request-approval "
                f"{row.slug}' and have them approve it by the link they get"
                + (
                    ", with their passkey ([newsletter] approval_proof)"
                    if config.approval_proof == "passkey"
                    else ""
                )
            )

    def prepare(self, config: Config, session: Session, row: ApprovedIssue) -> str:
        return config.archive_url(row.slug)

    def template(
        self, config: Config, engine: Engine, key: bytes, row: ApprovedIssue
    ) -> IssueTemplate:
        return approved_template(config, row, key, counted_links(config, engine, row))

    def due(self, config: Config, session: Session) -> list[str]:
        return [row.slug for row in due_issues(session, config.newsletter_id)]


def counted_links(config: Config, engine: Engine, issue: ApprovedIssue) -> list[Link]:
    """The issue's counted links, registered by the first sender that asks (two workers
    asking at once: one stores them, the other reads them back)."""
    if not config.tracking.clicks or issue.id is None:
        return []
    for _ in range(2):
        try:
            with Session(engine) as session:
                found = register(session, issue.id, issue.html, config.base_url)
                session.commit()
                return found
        except IntegrityError:
            continue
    raise NewsletterError(f"{issue.slug}: could not store the issue's links; try again")


def due_issues(
    session: Session, newsletter: str, now: datetime | None = None
) -> list[ApprovedIssue]:
    """The newsletter's approved issues whose time has come, and its sends left unfinished,
    oldest first (another newsletter on the database is sent from its own folder)."""
    moment = now or datetime.now(UTC)
    rows = session.exec(
        select(ApprovedIssue).where(
            col(ApprovedIssue.finished_at).is_(None),
            ApprovedIssue.newsletter == newsletter,
            ApprovedIssue.kind == KIND,
        )
    ).all()
    due = [
        row
        for row in rows
        if row.enqueued_at is not None or (row.send_at is not None and row.send_at <= moment)
    ]
    return sorted(due, key=lambda row: row.send_at or row.approved_at)
