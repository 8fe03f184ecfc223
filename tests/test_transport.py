"""Transports over real sockets (aiosmtpd) and the file outbox."""

from pathlib import Path

import pytest

from newsletter.delivery.message import build_message
from newsletter.delivery.transport import (
    FileTransport,
    SMTPTransport,
    Transport,
    display_transport,
    open_transport,
)
from newsletter.errors import ConfigError, TransportError
from tests.conftest import Project
from tests.issues import make_config
from tests.smtpserver import SMTPServer


def message(tmp_path: Path, to: str = "olena@example.org") -> bytes:
    config = make_config(tmp_path)
    return build_message(
        config, to=to, to_name="Olena", subject="Привіт", text="Hello\n",
        html="<p>Hello</p>", message_id_parts=("t", to),
    )  # fmt: skip


def test_messages_have_crlf_line_ends_and_the_basic_headers(tmp_path: Path) -> None:
    data = message(tmp_path)
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    for header in ("From: War Notes <notes@example.org>", "To: Olena <olena@example.org>",
                   "Subject: =?utf-8?", "Date: ", "Message-ID: <", "@example.org>",
                   "MIME-Version: 1.0", "multipart/alternative"):  # fmt: skip
        assert header in head, header
    assert data.index(b"text/plain") < data.index(b"text/html")


@pytest.mark.parametrize("pipelining", [True, False])
def test_smtp_delivers_and_reports_codes(
    tmp_path: Path, smtp_server: SMTPServer, pipelining: bool
) -> None:
    smtp_server.handler.pipelining = pipelining
    transport = open_transport(smtp_server.url, tmp_path)
    assert isinstance(transport, SMTPTransport)
    transport.send("notes@example.org", "olena@example.org", message(tmp_path))
    smtp_server.handler.refuse["gone@example.org"] = "550 5.1.1 No such user"
    with pytest.raises(TransportError) as refused:
        transport.send(
            "notes@example.org", "gone@example.org", message(tmp_path, "gone@example.org")
        )
    assert refused.value.code == 550 and refused.value.permanent
    smtp_server.handler.refuse["later@example.org"] = "451 4.3.0 Try later"
    with pytest.raises(TransportError) as deferred:
        transport.send(
            "notes@example.org", "later@example.org", message(tmp_path, "later@example.org")
        )
    assert deferred.value.code == 451 and not deferred.value.permanent
    transport.close()
    # With PIPELINING offered, MAIL, RCPT and DATA arrive together (2 round trips, not 4).
    assert smtp_server.handler.data_ahead == [pipelining] * 3
    (received,) = smtp_server.received
    assert received.recipients == ["olena@example.org"]
    assert received.message["Subject"] == "Привіт"


def test_a_server_that_is_down_is_a_transport_error(tmp_path: Path) -> None:
    transport = open_transport("smtp://127.0.0.1:9", tmp_path)
    with pytest.raises(TransportError, match="cannot connect to 127.0.0.1:9"):
        transport.send("a@example.org", "b@example.org", b"x")


def test_file_outbox_writes_whole_files(tmp_path: Path) -> None:
    transport = open_transport("file://outbox", tmp_path)
    assert isinstance(transport, FileTransport)
    transport.send("a@example.org", "b@example.org", message(tmp_path))
    (written,) = (tmp_path / "outbox").iterdir()
    assert written.suffix == ".eml"
    assert written.read_bytes().startswith(b"Return-Path: <a@example.org>\r\nFrom: War Notes")
    assert not list((tmp_path / "outbox").glob(".*.tmp"))


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("smtp://user:secret@mail.example.org", "NEWSLETTER_SMTP_PASSWORD"),
        ("smtp://mail.example.org?tls=maybe", "the only option is ?tls=off"),
        ("pigeon://coop", "unknown transport"),
        ("smtp://", "has no host"),
    ],
)
def test_bad_transport_urls(tmp_path: Path, url: str, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_transport(url, tmp_path)
    assert text in str(caught.value) and "secret" not in str(caught.value)


def test_passwords_are_masked_for_display() -> None:
    assert display_transport("smtp://u:pw@h:25") == "smtp://u:***@h:25"
    assert display_transport("smtp://u@h") == "smtp://u@h"


@pytest.mark.parametrize("body", [b".starts\r\nmid\r\n.\r\n..two\r\n", b"no dots here\r\n"])
def test_lines_starting_with_a_dot_arrive_intact(
    tmp_path: Path, smtp_server: SMTPServer, body: bytes
) -> None:
    data = b"Subject: dots\r\n\r\n" + body
    transport = open_transport(smtp_server.url, tmp_path)
    transport.send("notes@example.org", "olena@example.org", data)
    transport.close()
    (received,) = smtp_server.received
    assert received.data == data


@pytest.mark.parametrize("pipelining", [True, False])
def test_non_ascii_addresses_need_smtputf8(tmp_path: Path, pipelining: bool) -> None:
    """Without SMTPUTF8 that one recipient fails (the connection goes on); with it, the
    address reaches the server as UTF-8."""
    from aiosmtpd.controller import Controller

    from tests.smtpserver import Handler, free_port

    data = b"Subject: hi\r\n\r\nhello\r\n"
    for offered in (False, True):
        handler = Handler(pipelining=pipelining)
        controller = Controller(
            handler, hostname="127.0.0.1", port=free_port(), enable_SMTPUTF8=offered
        )
        controller.start()
        try:
            transport = open_transport(f"smtp://127.0.0.1:{controller.port}", tmp_path)
            if offered:
                transport.send("notes@example.org", "олена@example.org", data)
            else:
                with pytest.raises(TransportError) as refused:
                    transport.send("notes@example.org", "олена@example.org", data)
                assert refused.value.permanent and "SMTPUTF8" in str(refused.value)
            transport.send("notes@example.org", "olena@example.org", data)
            # An internationalised domain alone needs no SMTPUTF8: it goes out IDNA-encoded.
            transport.send("notes@example.org", "anna@bücher.example", data)
            transport.close()
        finally:
            controller.stop()
        expected = ["olena@example.org", "anna@xn--bcher-kva.example"]
        assert handler.addresses() == (["олена@example.org", *expected] if offered else expected)


NOTES = "notes@example.org"


@pytest.mark.parametrize("pipelining", [True, False])
def test_the_next_envelope_goes_with_the_final_dot(
    tmp_path: Path, smtp_server: SMTPServer, pipelining: bool
) -> None:
    """One round trip a message where the server pipelines: the next MAIL, RCPT and DATA
    arrive with the final dot, and every message arrives once, whole, to its recipient."""
    smtp_server.handler.pipelining = pipelining
    people = [f"reader{n}@example.org" for n in range(4)]
    transport = open_transport(smtp_server.url, tmp_path)
    for person, following in zip(people, [*people[1:], None], strict=True):
        then = (f"bounces+{following}", following) if following else None
        transport.send(f"bounces+{person}", person, message(tmp_path, person), then)
    transport.close()
    got = [(item.sender, item.recipients, item.message["To"]) for item in smtp_server.received]
    assert got == [(f"bounces+{p}", [p], f"Olena <{p}>") for p in people]
    assert smtp_server.handler.mail_ahead == [pipelining] * 3 + [False]


def test_an_envelope_sent_ahead_but_not_followed_delivers_nothing(
    tmp_path: Path, smtp_server: SMTPServer
) -> None:
    """The row whose envelope went ahead may not be sent after all (its reader unsubscribed,
    or the send stopped): the connection is closed in the middle of that transaction, and
    the server keeps nothing for it, not even an empty message."""
    transport = open_transport(smtp_server.url, tmp_path)
    skipped = ("bounces@example.org", "skipped@example.org")
    transport.send(NOTES, "a@example.org", message(tmp_path, "a@example.org"), skipped)
    transport.send(NOTES, "b@example.org", message(tmp_path, "b@example.org"), skipped)
    transport.close()  # with skipped@ still ahead
    assert smtp_server.handler.mail_ahead == [True, True]
    assert smtp_server.handler.addresses() == ["a@example.org", "b@example.org"]


@pytest.mark.parametrize("reply", ["554 5.7.1 Message refused", "421 4.3.2 Shutting down"])
def test_a_refused_message_does_not_spoil_the_envelope_behind_it(
    tmp_path: Path, smtp_server: SMTPServer, reply: str
) -> None:
    """A refusal at the final dot while the next envelope is on its way: no RSET goes into
    the next transaction; after a 421 the next message goes on a new connection."""
    smtp_server.handler.data_replies["refused@example.org"] = reply
    transport = open_transport(smtp_server.url, tmp_path)
    transport.send(NOTES, "a@example.org", message(tmp_path, "a@example.org"))
    with pytest.raises(TransportError) as refused:
        transport.send(
            NOTES,
            "refused@example.org",
            message(tmp_path, "refused@example.org"),
            (NOTES, "c@example.org"),
        )
    assert refused.value.code == int(reply[:3])
    following = message(tmp_path, "c@example.org")
    transport.send(NOTES, "c@example.org", following)
    transport.close()
    received = {item.recipients[0]: item.data for item in smtp_server.received}
    assert list(received) == ["a@example.org", "c@example.org"]
    assert received["c@example.org"] == following  # byte for byte: no RSET, no stray line


def test_every_scheme_is_one_entry_and_a_transport_closes_itself(tmp_path: Path) -> None:
    from newsletter.delivery.transport import SCHEMES

    assert set(SCHEMES) == {"file", "console", "smtp", "smtps", "ses", "postmark", "mailgun"}
    with open_transport("file://outbox", tmp_path) as outbound:
        outbound.send("notes@example.org", "olena@example.org", message(tmp_path))
        assert not outbound.batched and outbound.batch_size == 1
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1


@pytest.mark.parametrize("connections", [1, 3])
def test_a_send_opens_one_transport_per_connection_and_no_more(
    ready: Project, smtp_server: SMTPServer, connections: int
) -> None:
    """The run used to open one more to ask whether it takes batches, and close it unused."""
    from newsletter.audience.tokens import load_key
    from newsletter.delivery.connections import SendOptions
    from newsletter.delivery.send import SendRun

    config = ready.config
    opened: list[object] = []

    def make() -> Transport:
        made = open_transport(config.transport, config.root)
        opened.append(made)
        return made

    run = SendRun(
        config,
        ready.engine(),
        load_key(config.signing_key_file),
        "2022-W51",
        make,
        SendOptions(connections=connections),
    )
    report = run.execute()
    assert report.sent == 20 and report.exit_code == 0
    assert 1 <= len(opened) <= connections
