"""What every provider module gives and shares: verified events, and the refusal of a call
that is not what it claims to be."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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


MAX_DEPTH = 32  # nesting of a provider's JSON: theirs is a handful of levels deep


def parse_json(data: bytes | str, what: str) -> Any:
    """A call's JSON, refused (400) when it is not JSON or nested deeper than any provider
    writes: 100,000 levels made the parser raise RecursionError, a 500."""
    if _depth(data) > MAX_DEPTH:
        raise Refused(f"{what} nested too deeply", 400)
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise Refused(f"{what} is not JSON", 400) from None


def _depth(data: bytes | str) -> int:
    """The deepest nesting of brackets outside strings, found without recursion."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    return deepest
        elif char in "]}":
            depth -= 1
    return deepest
