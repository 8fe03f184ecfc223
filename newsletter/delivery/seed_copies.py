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
from newsletter.delivery.message import IssueTemplate, dkim_signer, issue_template, sender
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
    template = copy_template(
        config,
        slug=f"test-{issue.slug}-{time.time_ns()}",
        subject=f"[Test] {issue.subject}",
        html=rendered.html.source,
        text=rendered.text.source,
        feedback_id=config.feedback_id,
        reply_to=issue.reply_to or config.reply_to,
    )
    with make_transport() as transport:
        for raw in addresses:
            address = parse_address(raw)
            data = copy_for(config, template, address.email, address.key, issue.slug)
            transport.send(sender(config).addr_spec, address.email, data)
    return len(addresses)


def with_seeds(config: Config, addresses: list[str]) -> list[str]:
    """The addresses given, then the seed list (`[delivery] test_recipients`, which gets
    every test copy), each once."""
    seeds = [parseaddr(seed)[1] for seed in config.test_recipients]
    return list(dict.fromkeys([*addresses, *seeds]))


def copy_template(
    config: Config,
    *,
    slug: str,
    subject: str,
    html: str,
    text: str,
    feedback_id: str | None,
    reply_to: str | None,
) -> IssueTemplate:
    """The message of a copy that is not readers' mail (a test, an approver's), dated now,
    signed as readers' mail is."""
    return issue_template(
        config,
        slug=slug,
        subject=subject,
        html=html,
        text=text,
        date=datetime.now(UTC),
        dkim=dkim_signer(config),
        feedback_id=feedback_id,
        reply_to=reply_to,
    )


def copy_for(config: Config, template: IssueTemplate, email: str, key: str, slug: str) -> bytes:
    """One such copy's bytes: its personal links are placeholders that name nobody."""
    unsubscribe, preferences = personal_urls(config.base_url, "test")
    return template.render(
        email=email,
        email_key=key,
        name=None,
        unsubscribe_url=unsubscribe,
        view_url=config.archive_url(slug),
        preferences_url=preferences,
    )
