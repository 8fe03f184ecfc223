"""MIME messages: the headers every message carries, serialised for SMTP.

Messages are multipart/alternative, text first and HTML last (clients show the last part
they understand), UTF-8, with CRLF line ends: `email.policy.SMTP`, because `as_bytes()` with
the default policy gives bare LF, which servers reject. Message-IDs are on the sender's own
domain and derived from stable parts, so the same message for the same person keeps its id.
Header values pass through the email package, which refuses CR or LF in any of them: a
hostile name or address that slipped past validation still cannot add a header.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr

from newsletter.config import Config
from newsletter.models import Subscriber
from newsletter.render import environment, render_template


def sender(config: Config) -> Address:
    name, address = parseaddr(config.sender)
    local, _, domain = address.rpartition("@")
    return Address(display_name=name, username=local, domain=domain)


def message_id(config: Config, *parts: str) -> str:
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]
    return f"<{digest}@{sender(config).domain}>"


def recipient(email: str, name: str | None) -> Address:
    local, _, domain = email.rpartition("@")
    return Address(display_name=name or "", username=local, domain=domain)


def build_message(
    config: Config,
    *,
    to: Address,
    subject: str,
    text: str,
    html: str | None,
    message_id_parts: tuple[str, ...],
    headers: dict[str, str] | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    message = EmailMessage(policy=SMTP)
    message["From"] = sender(config)
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(date or datetime.now(UTC))
    message["Message-ID"] = message_id(config, *message_id_parts)
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(text, charset="utf-8")
    if html is not None:
        message.add_alternative(html, subtype="html", charset="utf-8")
    return message


def to_bytes(message: EmailMessage) -> bytes:
    return message.as_bytes(policy=SMTP)


def confirmation_message(config: Config, person: Subscriber, confirm_url: str) -> bytes:
    """The double opt-in email: the only message sent to someone not yet subscribed."""
    context = {
        "newsletter": {"name": config.name, "language": config.language,
                       "postal_address": config.postal_address},
        "name": person.name,
        "confirm_url": confirm_url,
    }  # fmt: skip
    text = render_template(environment(config, autoescape=False), "confirm.txt.j2", context)
    html = render_template(environment(config, autoescape=True), "confirm.html.j2", context)
    message = build_message(
        config,
        to=recipient(person.email, person.name),
        subject=f"Confirm your subscription to {config.name}",
        text=text,
        html=html,
        message_id_parts=("confirm", str(person.id), confirm_url),
        headers={"Auto-Submitted": "auto-generated"},
    )
    return to_bytes(message)
