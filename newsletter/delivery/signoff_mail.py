"""The mails of sign-off (editorial/signoff.py): each approver's test copy with a banner and
their link, and the approver's request for changes to whoever asked. Staff mail: English,
like the editors' CLI."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from newsletter import site_urls
from newsletter.config import Config
from newsletter.db import session_scope
from newsletter.delivery.message import build_message, dkim_signer, sender
from newsletter.delivery.seed_copies import copy_for, copy_template, send_tests
from newsletter.delivery.transport import Transport
from newsletter.editorial import signoff
from newsletter.editorial.render import after_body
from newsletter.editorial.signoff import Candidate, address_of, token_for
from newsletter.models import Approval


def when_words(config: Config, moment: datetime | None) -> str:
    """ "on Mon 26 Dec, 08:00 Kyiv time", in the newsletter's zone; or "as soon as approved"."""
    if moment is None:
        return "as soon as it is approved"
    local = moment.astimezone(config.timezone)
    place = str(config.timezone).rsplit("/", 1)[-1].replace("_", " ")
    return f"on {local:%a} {local.day} {local:%b}, {local:%H:%M} {place} time"


def approve_url(config: Config, key: bytes, row: Approval) -> str:
    return site_urls.approve(config.base_url, token_for(key, row))


def _banner(config: Config, row: Approval, url: str) -> tuple[str, str]:
    line = f"Approve for sending {when_words(config, row.send_at)}"
    asked = f"{row.requested_by} asked you to sign this issue off."
    block = (
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0"'
        ' style="background-color:#fff3bf;border-bottom:4px solid #111111;"><tr>'
        '<td align="center" style="padding:16px 12px;"><div style="max-width:552px;margin:0'
        " auto;font-family:-apple-system, BlinkMacSystemFont, 'Segoe UI', Roboto, Helvetica,"
        ' Arial, sans-serif;font-size:16px;line-height:1.5;color:#111111;text-align:start;">'
        f'<p style="margin:0 0 8px;">{html.escape(asked)}</p>'
        f'<p style="margin:0;"><a href="{html.escape(url, quote=True)}" style="color:#0b57d0;'
        f'font-weight:700;font-size:18px;">{html.escape(line)}</a></p>'
        "</div></td></tr></table>"
    )
    text = f"{asked}\n{line}:\n{url}\n\n{'-' * 40}\n\n"
    return block, text


def send_requests(
    config: Config,
    key: bytes,
    make_transport: Callable[[], Transport],
    found: Candidate,
    rows: list[Approval],
) -> int:
    """Each approver's real test copy, their banner and link on top; how many went."""
    sent = 0
    with make_transport() as transport:
        for row in rows:
            url = approve_url(config, key, row)
            block, lead = _banner(config, row, url)
            page = after_body(found.rendered.html.source, block)
            template = copy_template(
                config,
                slug=f"approval-{found.slug}-{row.id}",
                subject=f"[Approval] {found.subject}",
                html=page,
                text=lead + found.rendered.text.source,
                feedback_id=None,
                reply_to=config.reply_to,
            )
            address = address_of(row.approver)
            data = copy_for(config, template, address, address, found.slug)
            transport.send(sender(config).addr_spec, address, data)
            sent += 1
    return sent


def requester_address(config: Config, row: Approval) -> str:
    """Where a request for changes goes: the requester's address, else the desk's."""
    return (
        address_of(row.requested_by)
        or address_of(config.editor or "")
        or address_of(config.reply_to or "")
        or sender(config).addr_spec
    )


def changes_message(config: Config, row: Approval) -> tuple[str, bytes]:
    """(to, message): the approver's comment, to whoever asked."""
    to = requester_address(config, row)
    text = (
        f"{row.approver} asked for changes to {row.slug} ({row.subject}):\n\n"
        f"{row.comment or '(no comment)'}\n\n"
        "The pending approval links for this version no longer count once the file changes:\n"
        f"edit issues/{row.slug}.md, then run 'newsletter issue request-approval {row.slug}'.\n"
    )
    return to, _staff_mail(
        config, to, f"Changes requested: {row.subject}", text, ("changes", str(row.id))
    )


def _staff_mail(config: Config, to: str, subject: str, text: str, parts: tuple[str, ...]) -> bytes:
    message = build_message(
        config,
        to=to,
        to_name=None,
        subject=subject,
        text=text,
        html=None,
        message_id_parts=parts,
        headers={"Auto-Submitted": "auto-generated"},
    )
    signer = dkim_signer(config)
    return signer.sign(message) if signer else message


def passkey_link_message(config: Config, approver: str, url: str, expires: datetime) -> bytes:
    """The approver's one-time link to make their passkey (editorial/passkeys.py)."""
    local = expires.astimezone(config.timezone)
    text = (
        f"To approve issues of {config.name} with a passkey (your fingerprint, face or PIN,\n"
        "so an approval proves it is you, not only that your mail was read), open this link\n"
        "on the phone or computer you approve from, and press its button:\n\n"
        f"{url}\n\n"
        f"It works once, until {local:%a} {local.day} {local:%b}, {local:%H:%M}. "
        "If you did not expect it,\nignore it and tell whoever runs the newsletter.\n"
    )
    return _staff_mail(
        config,
        approver,
        f"Make your passkey for approving {config.name}",
        text,
        ("passkey", address_of(approver), url.rsplit("/", 1)[-1][:12]),
    )


def passkey_notice(config: Config, approver: str, client_address: str) -> bytes:
    """After a passkey was made: so that one made by someone else who held the link is seen."""
    text = (
        f"A passkey for approving {config.name} was just made for {approver}\n"
        f"(from the address {client_address}).\n\n"
        "If that was not you, tell whoever runs the newsletter at once: they remove it with\n"
        f"'newsletter approvers remove-passkeys {approver}'.\n"
    )
    return _staff_mail(
        config,
        approver,
        f"A passkey was made for approving {config.name}",
        text,
        ("passkey-made", address_of(approver), str(int(datetime.now(UTC).timestamp()))),
    )


@dataclass(frozen=True)
class ApprovalRequest:
    """What `issue request-approval` did: who was asked about which content, until when."""

    slug: str
    content_hash: str
    requested_by: str
    approvers: list[str]
    send_at: datetime | None
    expires_at: datetime | None
    mailed: int
    test_recipients: int

    def as_dict(self) -> dict[str, object]:
        return {
            "slug": self.slug,
            "content_hash": self.content_hash,
            "requested_by": self.requested_by,
            "approvers": self.approvers,
            "send_at": self.send_at.isoformat() if self.send_at else None,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "test_recipients": self.test_recipients,
        }


def request_approval(
    config: Config,
    engine: Engine,
    key: bytes,
    make_transport: Callable[[], Transport],
    slug_or_path: str,
    *,
    requested_by: str,
    send_at: datetime | None = None,
    to: list[str] | None = None,
) -> ApprovalRequest:
    """The request (editorial/signoff.py) recorded, each approver's copy with their link
    mailed, and the seed list's plain [Test] copy."""
    with session_scope(engine) as session:
        found, rows = signoff.request(
            config, session, slug_or_path, requested_by=requested_by, send_at=send_at, to=to
        )
    mailed = send_requests(config, key, make_transport, found, rows)
    seeds = [address_of(seed) for seed in config.test_recipients]
    if seeds:
        with Session(engine) as session:
            send_tests(config, session, found.slug, seeds, make_transport)
    return ApprovalRequest(
        slug=found.slug,
        content_hash=found.content_hash,
        requested_by=requested_by,
        approvers=[row.approver for row in rows],
        send_at=send_at,
        expires_at=rows[0].expires_at,
        mailed=mailed,
        test_recipients=len(seeds),
    )
