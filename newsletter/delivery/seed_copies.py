"""Test copies: the issue as its file is now (before or after approval), marked [Test], to
the seed list or the addresses given (`send --test-to`, `issue request-approval`). Not
readers' mail: no ledger row, no counted links."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parseaddr

from sqlmodel import Session

from newsletter.audience.subscribers import parse_address
from newsletter.config import Config
from newsletter.delivery.message import dkim_signer, issue_template, sender
from newsletter.delivery.transport import Transport
from newsletter.editorial.render import personal_urls, render_file


def send_tests(
    config: Config,
    session: Session,
    slug_or_path: str,
    addresses: list[str],
    make_transport: Callable[[], Transport],
) -> int:
    """Test sends of the issue as its file is now (before or after approval), marked
    [Test] in the subject; the ledger is not touched."""
    issue, rendered = render_file(config, session, slug_or_path)
    template = issue_template(
        config,
        slug=f"test-{issue.slug}-{time.time_ns()}",
        subject=f"[Test] {issue.subject}",
        html=rendered.html.source,
        text=rendered.text.source,
        date=datetime.now(UTC),
        dkim=dkim_signer(config),
        feedback_id=config.feedback_id,
        reply_to=issue.reply_to or config.reply_to,
    )
    with make_transport() as transport:
        for raw in addresses:
            address = parse_address(raw)
            unsubscribe, preferences = personal_urls(config.base_url, "test")
            data = template.render(
                email=address.email,
                email_key=address.key,
                name=None,
                unsubscribe_url=unsubscribe,
                view_url=config.archive_url(issue.slug),
                preferences_url=preferences,
            )
            transport.send(sender(config).addr_spec, address.email, data)
    return len(addresses)


def with_seeds(config: Config, addresses: list[str]) -> list[str]:
    """The addresses given, then the seed list (`[delivery] test_recipients`, which gets
    every test copy), each once."""
    seeds = [parseaddr(seed)[1] for seed in config.test_recipients]
    return list(dict.fromkeys([*addresses, *seeds]))
