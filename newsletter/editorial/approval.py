"""Approving an issue: freezing exactly what will be sent.

Approval renders the file, refuses it if a check fails, and stores subject, both parts (with
their placeholders), the web page and two hashes: of the content, and of the issue file. The
send works from this row, never from the file, so an editor's later typo fix cannot slip into
a send half-way; and an edit made after approval is visible (`stale`) and needs approving
again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from newsletter.config import Config
from newsletter.editorial.checks import Finding, check_rendered, has_errors
from newsletter.editorial.issue_file import IssueFile, issue_path
from newsletter.editorial.render import RenderedIssue, issue_outline, render_file
from newsletter.errors import CheckFailed, UsageError
from newsletter.models import ApprovedIssue


@dataclass(frozen=True)
class Approval:
    issue: ApprovedIssue
    findings: list[Finding]
    replaced: bool

    def as_dict(self) -> dict[str, Any]:
        """`issue approve --json`."""
        row = self.issue
        return {
            "slug": row.slug,
            "subject": row.subject,
            "content_hash": row.content_hash,
            "approved_at": row.approved_at.isoformat(),
            "send_at": row.send_at.isoformat() if row.send_at else None,
            "replaced": self.replaced,
            "findings": [f.as_dict() for f in self.findings],
        }


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def content_hash(issue: IssueFile, rendered: RenderedIssue) -> str:
    """Everything readers will get (subject, both parts with the preheader and every link,
    Reply-To): what an approval, by link or from the CLI, signs off."""
    parts = [issue.subject, rendered.html.source, rendered.text.source]
    content = "\x00".join(parts + ([issue.reply_to] if issue.reply_to else []))
    return hashlib.sha256(content.encode()).hexdigest()


def approve(
    config: Config,
    session: Session,
    slug_or_path: str,
    *,
    send_at: datetime | None = None,
    by: str | None = None,
) -> Approval:
    """Render, check and freeze an issue for sending. Does not commit: the caller's
    transaction holds the approval."""
    issue, rendered = render_file(config, session, slug_or_path)
    path = issue.path
    findings = check_rendered(config, issue, rendered)
    if has_errors(findings):
        first = next(f for f in findings if f.level == "error")
        count = sum(f.level == "error" for f in findings)
        raise CheckFailed(
            f"{issue.slug} has {count} check error(s), e.g. {first.message}; "
            f"see 'newsletter issue check {issue.slug}'"
        )
    row = issue_row(session, config.newsletter_id, issue.slug)
    if row is not None and row.enqueued_at is not None:
        raise UsageError(
            f"{issue.slug} is already being sent (or was sent): its approved copy cannot change; "
            "make a new issue with another --slug"
        )
    replaced = row is not None
    if row is None:
        row = blank_row(config.newsletter_id, issue.slug)
    row.newsletter = config.newsletter_id
    row.week = issue.week
    row.subject = issue.subject
    row.reply_to = issue.reply_to
    row.preheader = rendered.preheader
    row.html = rendered.html.source
    row.text = rendered.text.source
    row.web_html = rendered.web_html
    row.outline = issue_outline(config, issue, rendered.articles)
    row.content_hash = content_hash(issue, rendered)
    row.source_hash = file_hash(path)
    row.approved_at = datetime.now(UTC)
    row.send_at = send_at
    row.approved_by = by
    session.add(row)
    session.flush()
    session.refresh(row)
    return Approval(row, findings, replaced)


def blank_row(newsletter: str, slug: str, kind: str = "issue") -> ApprovedIssue:
    """A row of `issues` to be filled: by an approval, or as a newsletter's welcome row."""
    return ApprovedIssue(
        slug=slug,
        newsletter=newsletter,
        kind=kind,
        subject="",
        preheader="",
        html="",
        text="",
        web_html="",
        content_hash="",
        source_hash="",
    )


def issue_row(session: Session, newsletter: str, slug: str) -> ApprovedIssue | None:
    """The newsletter's approved issue of that slug: other newsletters on the database have
    their own 2022-W51, and the welcome row is not an issue."""
    return session.exec(
        select(ApprovedIssue).where(
            ApprovedIssue.newsletter == newsletter,
            ApprovedIssue.slug == slug,
            ApprovedIssue.kind == "issue",
        )
    ).first()


def approved(session: Session, newsletter: str) -> list[ApprovedIssue]:
    """The newsletter's approved issues, newest first (by send time, else approval time)."""
    rows = list(
        session.exec(
            select(ApprovedIssue).where(
                ApprovedIssue.newsletter == newsletter, ApprovedIssue.kind == "issue"
            )
        ).all()
    )
    return sorted(rows, key=lambda r: r.send_at or r.approved_at, reverse=True)


def is_stale(config: Config, row: ApprovedIssue) -> bool:
    """True when the issue file changed (or vanished) since it was approved."""
    path = issue_path(config, row.slug)
    return not path.is_file() or file_hash(path) != row.source_hash
