"""What every provider module gives and shares: verified events, and the refusal of a call
that is not what it claims to be."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from newsletter.feedback.parse import Report

MAX_BODY = 256 * 1024


class Refused(Exception):
    """A call that is not believed: a bad or missing signature (403), stale or replayed
    (403), or not the shape the provider sends (400). The reason is for the log only."""

    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Event:
    """One recipient's report from a verified call. `id` is the provider's, unique per
    event (the fingerprint: a replayed call changes nothing); `evidence` is the text of the
    event our tokens are searched in (the message's headers, its envelope sender)."""

    id: str
    report: Report
    evidence: bytes


@dataclass(frozen=True)
class Call:
    """A verified call: `id` is what makes it unique (Mailgun's token, SNS's MessageId),
    spent the first time it is seen whatever its events (feedback/webhooks.py)."""

    id: str
    events: list[Event]


def fresh(moment: datetime, now: datetime, max_age: float) -> None:
    """Refuse a call signed too long ago (or too far in the future): a replay."""
    age = (now - moment.astimezone(UTC)).total_seconds()
    if age > max_age or age < -300:
        raise Refused(f"signed {age:.0f} s ago, outside the {max_age:.0f} s window")
