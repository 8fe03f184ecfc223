"""Mailgun's webhooks (`failed` and `complained` events, JSON since API v3 webhooks).

Mailgun signs each call with an HMAC-SHA256, keyed by the account's webhook signing key
(NEWSLETTER_MAILGUN_SIGNING_KEY), over the call's timestamp and a random token:
`signature.signature == hex(hmac(key, timestamp + token))`. A call signed outside
`[bounces] webhook_max_age`, or with a bad signature, is refused before its events are read.
The signature does not cover the event itself, so each token is spent the first time it
is seen, whatever the event: a signature replayed with a different event changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

from newsletter.config import Config, environment_value
from newsletter.feedback.classify import normal_status, severity
from newsletter.feedback.parse import Report
from newsletter.feedback.webhook_events.common import Call, Event, Refused, fresh, parse_json

NAME = "mailgun"


def enabled(config: Config) -> bool:
    return environment_value("NEWSLETTER_MAILGUN_SIGNING_KEY") is not None


def sign(key: str, timestamp: str, token: str) -> str:
    return hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()


def read(body: bytes, config: Config, now: datetime | None = None) -> Call:
    key = environment_value("NEWSLETTER_MAILGUN_SIGNING_KEY")
    if key is None:
        raise Refused("the Mailgun webhook is off", 404)
    call = parse_json(body, "the Mailgun call")
    try:
        signature = call["signature"]
        timestamp, token, given = (
            str(signature["timestamp"]),
            str(signature["token"]),
            str(signature["signature"]),
        )
        data = call["event-data"]
    except (ValueError, KeyError, TypeError):
        raise Refused("not a Mailgun webhook call", 400) from None
    if not hmac.compare_digest(sign(key, timestamp, token), given):
        raise Refused("bad Mailgun signature")
    if not timestamp.isdigit():
        raise Refused("bad Mailgun timestamp", 400)
    fresh(
        datetime.fromtimestamp(int(timestamp), UTC),
        now or datetime.now(UTC),
        config.bounces.webhook_max_age,
    )
    if not isinstance(data, dict):
        raise Refused("no event-data", 400)
    # The signature covers the timestamp and token, not the event: a captured signature
    # replayed with another event must find its token spent, even by an event that acted
    # on nothing (a `delivered`), so the token is the call's id.
    call = f"mailgun:{token}"
    report = _report(data)
    if report is None:
        return Call(call, [])
    evidence = json.dumps(data.get("message", {})).encode()
    return Call(call, [Event(call, report, evidence)])


def _report(data: dict[str, Any]) -> Report | None:
    kind = data.get("event")
    recipient = str(data.get("recipient") or "").lower() or None
    if kind == "complained":
        return Report("complaint", recipient, diagnostic="Mailgun: complained")
    if kind != "failed":
        return None  # delivered, opened, ...: nothing to act on
    status_block = data.get("delivery-status") or {}
    words = " ".join(
        str(status_block.get(part) or "") for part in ("code", "message", "description")
    )
    status = normal_status(str(status_block.get("enhanced-code") or "")) or normal_status(words)
    temporary = data.get("severity") == "temporary"
    if data.get("reason") == "suppress-bounce":  # Mailgun's own list: it bounced before
        return Report("hard", recipient, status, "Mailgun: on the bounce list")
    judged = severity(status, words, permanent=False if temporary else None)
    return Report(
        "hard" if judged == "hard" else "soft",
        recipient,
        status,
        words.strip()[:500] or None,
        counts=judged != "delayed",
    )
