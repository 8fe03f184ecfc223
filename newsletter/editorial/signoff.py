"""Sign-off: an approver approves exactly what readers will get, by a link in a test copy
mailed to them, and the trail says who (docs/approval.md).

`request` renders the issue file as it is now and records one `approvals` row per approver,
bound to the candidate's content hash (approval.content_hash: subject, both parts, every
link, Reply-To) and carrying the candidate's HTML for the page. The link's token names the
row and signs its approver, issue, hash and expiry (`signing.APPROVE`); it works until
`[newsletter] approval_hours` have passed and acts once. A GET changes nothing (security
gateways open every link in a message); only the approver's POST decides (web/approve.py).

A decision counts only while the file still renders to the requested hash: an edit, a move
or a re-render with a different result voids every pending link ("changed"). With
`approvals_needed = 2`, two approvers other than the requester must approve the same hash;
the last approval freezes the issue (approval.approve) for its send time, as `issue
approve` does. `issue approve` from the CLI records its own row (channel "cli") in the same
trail, and `signed_off` is what `send` asks when `require_approval` is set.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any, Literal

from sqlmodel import Session, col, select

from newsletter import signing
from newsletter.config import Config
from newsletter.dates import utc_now
from newsletter.editorial.approval import approve, content_hash, issue_row
from newsletter.editorial.checks import check_rendered, has_errors
from newsletter.editorial.issue_file import IssueFile
from newsletter.editorial.render import RenderedIssue, personalize, render_file, sample_recipient
from newsletter.errors import CheckFailed, NewsletterError, UsageError
from newsletter.models import Approval, ApprovedIssue
from newsletter.untrusted import strip_controls

Decision = Literal["approved", "changes"]
Proof = Literal["link", "passkey"]


def identity(given: str | None, config: Config) -> str:
    """Who acts: `--as`, else the config's editor, else the system user."""
    if given and given.strip():
        return " ".join(strip_controls(given).split())[:400]
    return config.editor or system_user()


def system_user() -> str:
    """The account running the command (cron's, or the editor's)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


def address_of(person: str) -> str:
    """The address in `Name <user@example.org>`, lower-cased; "" for a bare name."""
    found = parseaddr(person)[1]
    return found.lower() if "@" in found else ""


@dataclass(frozen=True)
class Candidate:
    issue: IssueFile
    slug: str
    subject: str
    content_hash: str
    rendered: RenderedIssue
    html: str  # a sample reader's email, as readers will see it


def candidate(config: Config, session: Session, slug_or_path: str) -> Candidate:
    """The issue file rendered as it is now."""
    issue, rendered = render_file(config, session, slug_or_path)
    html = personalize(
        rendered.html, sample_recipient(config, issue.slug), config.name_fallback, "html"
    )
    return Candidate(
        issue, issue.slug, issue.subject, content_hash(issue, rendered), rendered, html
    )


def current_hash(config: Config, session: Session, slug: str) -> str | None:
    """What the file renders to now; None when it no longer renders (gone, broken)."""
    try:
        return candidate(config, session, slug).content_hash
    except NewsletterError:
        return None


def request(
    config: Config,
    session: Session,
    slug_or_path: str,
    *,
    requested_by: str,
    send_at: datetime | None,
    to: list[str] | None = None,
) -> tuple[Candidate, list[Approval]]:
    """One pending row per approver (all of `[newsletter] approvers`, or `to`, each of
    whom must be one of them). Does not commit."""
    chosen = to or list(config.approvers)
    if not chosen:
        raise UsageError(
            'no approvers: set [newsletter] approvers = ["Name <address>"] or pass --to'
        )
    known = {address_of(a): a for a in config.approvers}
    people = []
    for person in chosen:
        address = address_of(person)
        if address not in known:
            raise UsageError(
                f"--to {person!r} is not one of [newsletter] approvers; add them there first"
            )
        people.append(known[address])
    found = candidate(config, session, slug_or_path)
    findings = check_rendered(config, found.issue, found.rendered)
    if has_errors(findings):
        first = next(f for f in findings if f.level == "error")
        raise CheckFailed(
            f"{found.slug} fails a check ({first.message}): fix it before asking for approval; "
            f"see 'newsletter issue check {found.slug}'"
        )
    frozen = issue_row(session, config.newsletter_id, found.slug)
    if frozen is not None and frozen.enqueued_at is not None:
        raise UsageError(f"{found.slug} is already being sent (or was sent): nothing to approve")
    now = utc_now()
    made = []
    for person in people:
        row = Approval(
            newsletter=config.newsletter_id,
            slug=found.slug,
            content_hash=found.content_hash,
            channel="link",
            requested_by=requested_by,
            requested_at=now,
            approver=person,
            send_at=send_at,
            expires_at=now + timedelta(hours=config.approval_hours),
            subject=found.subject,
            html=found.html,
        )
        session.add(row)
        made.append(row)
    session.flush()
    return found, made


def token_for(key: bytes, row: Approval) -> str:
    """`<row id>.<expiry ms>.<MAC over approver, newsletter, slug, hash, expiry>`."""
    assert row.id is not None and row.expires_at is not None
    return signing.row_token(
        row.id, row.expires_at, lambda ms: signing.sign(key, signing.APPROVE, *_signed(row, ms))
    )


def _signed(row: Approval, expiry: int) -> tuple[object, ...]:
    return (row.id, row.approver, row.newsletter, row.slug, row.content_hash, expiry)


def pending(key: bytes, session: Session, config: Config, token: str) -> Approval | None:
    """The row a token names, if the token is this newsletter's, unaltered, unexpired and
    unused; else None (every one of those gets the same 404)."""
    found = signing.read_row_token(token)
    if found is None:
        return None
    row = session.get(Approval, found.row_id)
    if row is None or row.channel != "link" or row.newsletter != config.newsletter_id:
        return None
    if not signing.verify(key, signing.APPROVE, found.mac, *_signed(row, found.expiry)):
        return None
    if signing.expired(row.expires_at, found.expiry) or row.decision is not None:
        return None
    return row


def still_current(config: Config, session: Session, row: Approval) -> bool:
    """Whether the file still renders to what was asked about, and nothing else froze it."""
    frozen = issue_row(session, config.newsletter_id, row.slug)
    if frozen is not None and frozen.enqueued_at is not None:
        return False
    return current_hash(config, session, row.slug) == row.content_hash


@dataclass(frozen=True)
class Outcome:
    """What a decision did: `approved` (the issue is frozen, scheduled), `waiting` (an
    approval recorded, another approver's still needed), `changes` (the comment recorded,
    for the requester), or `changed` (the issue changed since: nothing recorded)."""

    result: Literal["approved", "waiting", "changes", "changed"]
    issue: ApprovedIssue | None = None


def decide(
    config: Config,
    session: Session,
    row: Approval,
    decision: Decision,
    *,
    comment: str = "",
    client_address: str | None = None,
    proof: Proof = "link",
) -> Outcome:
    """The approver's POST, `proof` saying whether their passkey signed it. Does not commit
    (the caller's transaction holds the decision and, when it is the last one needed, the
    frozen issue together)."""
    if not still_current(config, session, row):
        return Outcome("changed")
    row.decision = decision
    row.proof = proof
    row.decided_at = utc_now()
    # The comment goes into a mail to the editor: no control or bidi character from the
    # web form reaches it (an ESC, a BEL, a U+202E that reorders what the editor reads).
    row.comment = " ".join(strip_controls(comment).split())[:4000] or None
    row.client_address = (client_address or "")[:100] or None
    session.add(row)
    session.flush()
    if decision == "changes":
        return Outcome("changes")
    if len(approvers_of(session, config, row.slug, row.content_hash)) < config.approvals_needed:
        return Outcome("waiting")
    already = issue_row(session, config.newsletter_id, row.slug)
    if (
        already is not None
        and already.content_hash == row.content_hash
        and already.send_at == row.send_at
        and already.approved_by is not None
    ):
        return Outcome("approved", already)  # another approver's link froze it already
    frozen = approve(config, session, row.slug, send_at=row.send_at, by=row.approver)
    if frozen.issue.content_hash != row.content_hash:  # a race with an edit: act on nothing
        raise NewsletterError(f"{row.slug} changed while it was being approved; ask again")
    return Outcome("approved", frozen.issue)


def approvers_of(session: Session, config: Config, slug: str, digest: str) -> set[str]:
    """The distinct approvers (by address) whose approval of this content counts: given by
    their link (signed with their passkey, under `approval_proof = "passkey"`), listed in
    `[newsletter] approvers` now, and, when two are needed, not the one who asked."""
    listed = {address_of(a) for a in config.approvers}
    query = select(Approval).where(
        Approval.newsletter == config.newsletter_id,
        Approval.slug == slug,
        Approval.content_hash == digest,
        Approval.decision == "approved",
        # By link only: the approver's own mailbox and click. `issue approve --as` is a
        # record of who ran it, which anyone at a terminal can type.
        Approval.channel == "link",
    )
    if config.approval_proof == "passkey":
        query = query.where(Approval.proof == "passkey")
    rows = session.exec(query).all()
    counted = set()
    for row in rows:
        who = address_of(row.approver)
        if who not in listed:
            continue
        if config.approvals_needed > 1 and who == address_of(row.requested_by):
            continue
        counted.add(who)
    return counted


def record_cli(session: Session, config: Config, issue: ApprovedIssue, by: str) -> None:
    """`issue approve` from the CLI, in the same trail. Does not commit."""
    session.add(
        Approval(
            newsletter=config.newsletter_id,
            slug=issue.slug,
            content_hash=issue.content_hash,
            channel="cli",
            requested_by=by,
            approver=by,
            send_at=issue.send_at,
            subject=issue.subject,
            html="",
            decision="approved",
            decided_at=utc_now(),
        )
    )


def signed_off(session: Session, config: Config, issue: ApprovedIssue) -> bool:
    """`require_approval`: enough approvers approved exactly this frozen content."""
    found = approvers_of(session, config, issue.slug, issue.content_hash)
    return len(found) >= config.approvals_needed


def history(session: Session, config: Config, slug: str) -> dict[str, Any]:
    """`issue history`: every request and decision in order, the frozen issue and its send."""
    rows = session.exec(
        select(Approval)
        .where(Approval.newsletter == config.newsletter_id, Approval.slug == slug)
        .order_by(col(Approval.id))
    ).all()
    frozen = issue_row(session, config.newsletter_id, slug)
    if not rows and frozen is None:
        raise UsageError(f"{slug}: no approval was requested or given; see 'newsletter issue list'")

    def when(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    return {
        "slug": slug,
        "events": [
            {
                "channel": row.channel,
                "requested_by": row.requested_by,
                "requested_at": when(row.requested_at),
                "approver": row.approver,
                "content_hash": row.content_hash,
                "send_at": when(row.send_at),
                "expires_at": when(row.expires_at),
                "decision": row.decision,
                "decided_at": when(row.decided_at),
                "comment": row.comment,
                "client_address": row.client_address,
                "proof": row.proof,
            }
            for row in rows
        ],
        "approved": None
        if frozen is None
        else {
            "content_hash": frozen.content_hash,
            "approved_at": when(frozen.approved_at),
            "approved_by": frozen.approved_by,
            "send_at": when(frozen.send_at),
            "sent_by": frozen.sent_by,
            "enqueued_at": when(frozen.enqueued_at),
            "finished_at": when(frozen.finished_at),
        },
    }
