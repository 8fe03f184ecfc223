"""Providers' verified events into the same policy returned mail goes through: each event
is a report whose proof of being about our mail is our signed tokens in the headers the
provider returns (the Message-ID, the VERP envelope sender), as with a bounce by mail."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from types import ModuleType

from sqlmodel import Session

from newsletter.config import Config
from newsletter.db import Cursor
from newsletter.delivery import row_tokens
from newsletter.feedback.parse import Parsed, Traces
from newsletter.feedback.policy import Handled, apply
from newsletter.feedback.webhook_events import mailgun, ses
from newsletter.feedback.webhook_events.common import MAX_BODY, Call, Refused

# Adding a provider: a module with NAME, enabled(config) and read(body, config), listed here.
PROVIDERS: dict[str, ModuleType] = {module.NAME: module for module in (ses, mailgun)}

__all__ = ["MAX_BODY", "PROVIDERS", "Refused", "receive"]


def receive(
    session: Session,
    config: Config,
    key: bytes,
    provider: str,
    body: bytes,
    now: datetime | None = None,
) -> list[Handled]:
    """Verify one call and act on its events; raises Refused for a call not believed.
    Does not commit."""
    module = PROVIDERS.get(provider)
    if module is None or not module.enabled(config):
        raise Refused(f"no webhook {provider!r}", 404)
    moment = now or datetime.now(UTC)
    call: Call = module.read(body, config, moment)
    if not _spend(session, call.id, moment, config.bounces.webhook_max_age):
        return []  # seen before: a provider's retry, or a replay; acts once either way
    handled: list[Handled] = []
    for event in call.events:
        # Our message's own headers as the provider returns them: its Message-ID (m-) and
        # envelope sender (b-); the u- mark also rides in the footer link, proving nothing.
        tokens = [
            token
            for token in row_tokens.find(key, config.newsletter_id, event.evidence)
            if token.kind in ("b", "m")
        ]
        parsed = Parsed([event.report], Traces(tokens=tokens))
        digest = hashlib.sha256(event.id.encode()).hexdigest()
        handled += apply(session, config, parsed, origin=provider, source=event.id, digest=digest)
    return handled


def _spend(session: Session, call_id: str, now: datetime, window: float) -> bool:
    """Whether this call is new; marks it seen. Entries older than twice the window go
    (a call signed that long ago is refused as stale before it gets here)."""
    cursor = Cursor.of(session)
    cursor.count(
        "DELETE FROM webhook_calls WHERE seen_at < ?",
        cursor.stamp(now - timedelta(seconds=2 * window + 300)),
    )
    return bool(
        cursor.count(
            "INSERT INTO webhook_calls (fingerprint, seen_at) VALUES (?, ?)"
            " ON CONFLICT (fingerprint) DO NOTHING",
            hashlib.sha256(call_id.encode("utf-8", "replace")).hexdigest(),
            cursor.stamp(now),
        )
    )
