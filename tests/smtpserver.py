"""A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives, and can refuse."""

from __future__ import annotations

import asyncio
import email
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.policy import default
from typing import Any

import pytest
from aiosmtpd.controller import Controller


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes

    @property
    def message(self) -> Message:
        return email.message_from_bytes(self.data, policy=default)


@dataclass
class Handler:
    """Accepts everything unless told otherwise: `refuse` maps an address to the reply its
    RCPT gets; `mail_replies` are the replies to the next MAIL commands (e.g. 421);
    `drop_on_rcpt` closes the connection at that address's RCPT (before the final dot);
    `drop_after_data` keeps the message but closes without replying (after the final dot);
    `close_after_mail_reply` closes the connection right after a `mail_replies` reply;
    `data_replies` maps an address to the reply its message's final dot gets (421 closes).
    It offers PIPELINING, as Postfix does, unless `pipelining` is False (aiosmtpd reads
    pipelined commands in order either way)."""

    received: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    mail_replies: list[str] = field(default_factory=list)
    drop_on_rcpt: set[str] = field(default_factory=set)
    drop_after_data: set[str] = field(default_factory=set)
    delay: float = 0.0
    pipelining: bool = True
    close_after_mail_reply: bool = False
    data_replies: dict[str, str] = field(default_factory=dict)
    # As data_replies, each used once (a throttling reply, then the message is taken).
    data_replies_once: dict[str, str] = field(default_factory=dict)
    # For each RCPT: whether the client had already sent DATA (it pipelined the envelope).
    data_ahead: list[bool] = field(default_factory=list)
    # For each final dot: whether the next MAIL came with it (the next envelope pipelined).
    mail_ahead: list[bool] = field(default_factory=list)

    async def handle_EHLO(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.mail_replies:
            reply = self.mail_replies.pop(0)
            if self.close_after_mail_reply:
                # As Postfix does after a 421: the reply, then the connection is gone.
                await server.push(reply)
                server.transport.close()
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        buffered = getattr(getattr(server, "_reader", None), "_buffer", b"")
        self.data_ahead.append(b"DATA\r\n" in bytes(buffered).upper())
        if address in self.drop_on_rcpt:
            server.transport.close()
            return "421 closing"
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        buffered = getattr(getattr(server, "_reader", None), "_buffer", b"")
        self.mail_ahead.append(bytes(buffered).upper().startswith(b"MAIL FROM:"))
        if self.delay:
            await asyncio.sleep(self.delay)
        refused = [self.data_replies_once.pop(a) for a in envelope.rcpt_tos
                   if a in self.data_replies_once]  # fmt: skip
        refused += [self.data_replies[a] for a in envelope.rcpt_tos if a in self.data_replies]
        if refused:
            if refused[0].startswith("421"):
                await server.push(refused[0])
                server.transport.close()
            return refused[0]
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content))
        )
        if set(envelope.rcpt_tos) & self.drop_after_data:
            server.transport.close()
        return "250 Message accepted"

    def addresses(self) -> list[str]:
        return [address for item in self.received for address in item.recipients]


@dataclass
class SMTPServer:
    host: str
    port: int
    handler: Handler

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    @property
    def received(self) -> list[Received]:
        return self.handler.received


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    handler = Handler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield SMTPServer(controller.hostname, controller.port, handler)
    controller.stop()
