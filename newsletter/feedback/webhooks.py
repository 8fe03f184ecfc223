"""Providers' verified events into the same policy returned mail goes through: each event
is a report whose proof of being about our mail is our signed tokens in the headers the
provider returns (the Message-ID, the VERP envelope sender), as with a bounce by mail."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from types import ModuleType

from sqlmodel import Session

from newsletter.config import Config
from newsletter.delivery import return_path
from newsletter.feedback.parse import Parsed, Traces
from newsletter.feedback.policy import Handled, apply
from newsletter.feedback.providers import mailgun, ses
from newsletter.feedback.providers.common import MAX_BODY, Event, Refused

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
    events: list[Event] = module.read(body, config, now or datetime.now(UTC))
    handled: list[Handled] = []
    for event in events:
        tokens = return_path.find(key, config.key, event.evidence)
        parsed = Parsed([event.report], Traces(tokens=tokens))
        digest = hashlib.sha256(event.id.encode()).hexdigest()
        handled += apply(
            session, config, key, parsed, origin=provider, source=event.id, digest=digest
        )
    return handled
