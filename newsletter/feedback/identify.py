"""Which of our messages a report is about, and the proof of it.

Anyone can send mail to the bounce address, and a forged "user unknown" naming a reader
would otherwise unsubscribe them. So a report acts only on a ledger row named by a valid
signed token (return_path.py): the VERP address it came back to, or our Message-ID,
envelope sender or mailto: address quoted in the returned headers; or, failing those, on
the person named by our signed https unsubscribe link. The address a report names is not
proof (it is what a forger would write), only the way to choose among several proven rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from newsletter.audience.subscribers import by_token
from newsletter.audience.tokens import read_token
from newsletter.delivery.ledger import Cursor, read_time
from newsletter.feedback.parse import Report, Traces


@dataclass(frozen=True)
class Row:
    """What the policy needs of a ledger row."""

    id: int
    issue_id: int
    subscriber_id: int | None
    email_key: str
    sent_at: datetime | None


@dataclass(frozen=True)
class Target:
    """What a verified report acts on: a ledger row (and its person), or only a person."""

    subscriber_id: int | None
    delivery: Row | None = None

    @property
    def issue_id(self) -> int | None:
        return self.delivery.issue_id if self.delivery else None


def proven_rows(session: Session, traces: Traces) -> list[Row]:
    """The ledger rows our valid tokens name (a token for a row that no longer exists, or
    whose issue differs, proves nothing)."""
    named = {(t.issue_id, t.delivery_id) for t in traces.tokens + traces.addressed}
    if not named:
        return []
    cursor = Cursor.of(session)
    found = cursor.rows(
        "SELECT id, issue_id, subscriber_id, email_key, sent_at FROM deliveries WHERE id IN ?",
        sorted({delivery for _, delivery in named}),
    )
    rows = [Row(i, issue, person, key, read_time(sent)) for i, issue, person, key, sent in found]
    return [row for row in rows if (row.issue_id, row.id) in named]


def target(
    session: Session,
    key: bytes,
    newsletter: str,
    report: Report,
    traces: Traces,
    rows: list[Row],
) -> Target | None:
    """The proven row (or person) this report is about, or None: unverified."""
    addressed = {t.delivery_id for t in traces.addressed if t.kind in ("b", "u")}
    candidates = [row for row in rows if row.id in addressed] or rows
    if len(candidates) > 1 and report.recipient:
        matching = [row for row in candidates if row.email_key == report.recipient]
        candidates = matching or candidates
    if len(candidates) == 1:
        return Target(candidates[0].subscriber_id, candidates[0])
    if candidates:
        return None  # several of our messages and no way to tell which: touch none
    people = []
    for subject in traces.people:
        proof = read_token(key, "unsubscribe", newsletter, subject)
        person = by_token(session, proof) if proof else None
        if person is not None and person.id not in people:
            people.append(person.id)
    return Target(people[0]) if len(people) == 1 else None
