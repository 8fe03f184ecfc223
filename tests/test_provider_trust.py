"""One provider answer harms nobody else (issue 34): against a scripted endpoint on
127.0.0.1 that answers as a provider's documentation does not promise (a request-level
400, a redirect, a 200 that is not the API's answer, a reordered batch, a trickled or huge
body, an echo of our credentials, control characters), every answer touches only its own
reader, and a send is never repeated by a client-side retry."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlmodel import Session, select

from newsletter.delivery.providers import MailgunTransport, PostmarkTransport, SESTransport
from newsletter.errors import ConfigError, ProviderPaused, TransportError
from newsletter.models import Delivery, Suppression
from tests.conftest import Project
from tests.providerservers import MAILGUN_KEY, POSTMARK_TOKEN
from tests.sending import AUDIENCE
from tests.smtpserver import SMTPServer

Respond = Callable[[BaseHTTPRequestHandler, bytes], None]


@dataclass
class Scripted:
    respond: Respond
    port: int = 0
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def scripted() -> Iterator[Callable[[Respond], Scripted]]:
    servers: list[ThreadingHTTPServer] = []

    def start(respond: Respond) -> Scripted:
        state = Scripted(respond)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                state.requests.append((self.path, dict(self.headers.items()), body))
                try:
                    state.respond(self, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        state.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def answer(handler: BaseHTTPRequestHandler, status: int, body: Any, **headers: str) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


def drop(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    handler.connection.shutdown(socket.SHUT_RDWR)


def ses_error(status: int, code: str, message: str) -> Respond:
    def respond(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        answer(handler, status, {"message": message}, **{"x-amzn-ErrorType": code})

    return respond


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_POSTMARK_TOKEN", POSTMARK_TOKEN)
    monkeypatch.setenv("NEWSLETTER_MAILGUN_API_KEY", MAILGUN_KEY)


MESSAGE = (
    b"From: War Notes <notes@example.org>\r\nTo: reader@example.org\r\nSubject: Hi\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n"
)


def slow(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    time.sleep(2.5)
    answer(handler, 200, {"MessageId": "late"})


@pytest.mark.parametrize(
    "respond", [ses_error(500, "InternalFailure", "boom"), drop, slow], ids=["500", "drop", "slow"]
)
def test_ses_sends_each_message_once_whatever_the_answer(
    aws: None, scripted: Callable[[Respond], Scripted], respond: Respond
) -> None:
    server = scripted(respond)
    ses = SESTransport(f"ses://eu-west-1?endpoint={server.endpoint}&timeout=1")
    try:
        with pytest.raises(TransportError):
            ses.send("notes@example.org", "reader@example.org", MESSAGE)
    finally:
        ses.close()
    time.sleep(0.2)
    assert len(server.requests) == 1  # botocore's retry would make it 2: a second copy


@pytest.mark.parametrize(
    "status,code,words",
    [
        (400, "BadRequestException", "Invalid configuration set name"),
        (400, "NotFoundException", "Configuration set does not exist"),
        (307, "", "Temporary Redirect"),
        (404, "UnknownOperationException", ""),
    ],
)
def test_an_ses_answer_about_the_request_pauses_and_fails_nobody(
    aws: None, scripted: Callable[[Respond], Scripted], status: int, code: str, words: str
) -> None:
    server = scripted(ses_error(status, code, words))
    ses = SESTransport(f"ses://eu-west-1?endpoint={server.endpoint}&timeout=5")
    try:
        with pytest.raises(ProviderPaused):
            ses.send("notes@example.org", "reader@example.org", MESSAGE)
        # About the reader: their row fails, and only theirs.
        server.respond = ses_error(
            400, "BadRequestException", "Illegal address: reader@example.org"
        )
        with pytest.raises(TransportError) as refused:
            ses.send("notes@example.org", "reader@example.org", MESSAGE)
        assert refused.value.code == 550 and not refused.value.smtp
        server.respond = ses_error(400, "TooManyRequestsException", "Maximum sending rate exceeded")
        with pytest.raises(TransportError) as throttled:
            ses.send("notes@example.org", "reader@example.org", MESSAGE)
        assert throttled.value.code == 421
    finally:
        ses.close()


def _send(project: Project, transport: str) -> tuple[int, dict[str, object], str]:
    result = project.run("send", "2022-W51", "--json", "--transport", transport)
    assert result.exit_code in (0, 1, 2, 75), result.output
    stdout = result.stdout.strip()
    return result.exit_code, json.loads(stdout) if stdout else {}, result.stderr


def _states(project: Project) -> dict[str, str]:
    with Session(project.engine()) as session:
        return {row.email: row.state for row in session.exec(select(Delivery)).all()}


def _suppressed(project: Project) -> list[str]:
    with Session(project.engine()) as session:
        return [s.reason for s in session.exec(select(Suppression)).all()]


def test_one_request_level_answer_suppresses_nobody(
    ready: Project, keys: None, scripted: Callable[[Respond], Scripted]
) -> None:
    """Mailgun's 400 about a parameter, quoting an SMTP reply: today it bounced and
    suppressed every reader of every list."""
    server = scripted(
        lambda h, b: answer(h, 400, {"message": "from parameter: 550 5.1.1 mailbox unavailable"})
    )
    url = f"mailgun://news.example.org?endpoint={server.endpoint}&timeout=5"
    before = _suppressed(ready)
    code, report, stderr = _send(ready, url)
    assert code == 75 and "paused" in (stderr + json.dumps(report)).lower()
    assert set(_states(ready).values()) == {"queued"}
    assert _suppressed(ready) == before
    assert len(server.requests) <= 4  # one per connection at most, not one per reader


def test_a_providers_words_saying_5_1_1_fail_the_reader_but_bounce_nobody(
    ready: Project, keys: None, scripted: Callable[[Respond], Scripted]
) -> None:
    def respond(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        if AUDIENCE[0].encode() in body:
            words = {"message": "'to' parameter is not a valid address: 550 5.1.1 unknown"}
            answer(handler, 400, words)
        else:
            answer(handler, 200, {"id": "<x@mg>", "message": "Queued"})

    server = scripted(respond)
    before = _suppressed(ready)
    code, _, _ = _send(ready, f"mailgun://news.example.org?endpoint={server.endpoint}")
    states = _states(ready)
    assert states[AUDIENCE[0]] == "failed"
    assert all(states[e] == "sent" for e in AUDIENCE[1:])
    assert _suppressed(ready) == before  # a provider's words are not an SMTP reply


@pytest.mark.parametrize(
    "body", [b"<html>OK</html>", b'{"Message": "OK"}', b"[]"], ids=["html", "no-code", "list"]
)
def test_a_postmark_200_that_is_not_its_answer_is_in_doubt(
    keys: None, scripted: Callable[[Respond], Scripted], body: bytes
) -> None:
    server = scripted(lambda h, b: answer(h, 200, body))
    postmark = PostmarkTransport(f"postmark://?endpoint={server.endpoint}")
    try:
        with pytest.raises(TransportError) as doubt:
            postmark.send("notes@example.org", "reader@example.org", MESSAGE)
        assert doubt.value.stage == "after-dot"  # unknown: never sent again blindly
        items = [("notes@example.org", f"r{n}@example.org", MESSAGE) for n in range(3)]
        if body == b"[]":  # a list with no result for anyone: each in doubt
            results = postmark.send_batch(items)
            assert all(isinstance(r, TransportError) and r.stage == "after-dot" for r in results)
        else:
            with pytest.raises(TransportError) as whole:
                postmark.send_batch(items)
            assert whole.value.stage == "after-dot"
    finally:
        postmark.close()


def test_postmark_batch_results_are_matched_by_recipient(
    keys: None, scripted: Callable[[Respond], Scripted]
) -> None:
    def respond(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        sent = json.loads(body)
        results = [
            {"ErrorCode": 406, "Message": "Inactive recipient", "To": m["To"]}
            if "bad" in m["To"]
            else {"ErrorCode": 0, "Message": "OK", "MessageID": f"id-{m['To']}", "To": m["To"]}
            for m in sent
        ]
        results.reverse()  # the documentation promises no order
        results.append({"Message": "no code"})  # and an entry that is no result at all
        answer(handler, 200, results)

    server = scripted(respond)
    postmark = PostmarkTransport(f"postmark://?endpoint={server.endpoint}")
    items = [("notes@example.org", to, MESSAGE) for to in
             ("a@example.org", "bad@example.org", "c@example.org")]  # fmt: skip
    try:
        results = postmark.send_batch(items)
    finally:
        postmark.close()
    assert results[0] == "id-a@example.org" and results[2] == "id-c@example.org"
    assert isinstance(results[1], TransportError) and results[1].code == 550


def test_a_trickled_or_huge_answer_is_cut_off(
    keys: None, scripted: Callable[[Respond], Scripted]
) -> None:
    def trickle(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "100")
        handler.end_headers()
        for _ in range(100):
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.3)

    server = scripted(trickle)
    postmark = PostmarkTransport(f"postmark://?endpoint={server.endpoint}&timeout=1")
    started = time.monotonic()
    try:
        with pytest.raises(TransportError) as late:
            postmark.send("notes@example.org", "reader@example.org", MESSAGE)
        assert time.monotonic() - started < 3 and late.value.stage == "after-dot"
        server.respond = lambda h, b: answer(h, 200, b"[" + b" " * (8 * 1024 * 1024) + b"]")
        with pytest.raises(TransportError) as huge:
            postmark.send("notes@example.org", "reader@example.org", MESSAGE)
        assert "KB" in str(huge.value)
    finally:
        postmark.close()


def test_an_echo_of_our_credentials_is_never_kept(
    keys: None, scripted: Callable[[Respond], Scripted]
) -> None:
    def echo(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        told = " ".join(f"{k}: {v}" for k, v in handler.headers.items())
        answer(handler, 422, {"ErrorCode": 300, "Message": told, "message": told})

    server = scripted(echo)
    postmark = PostmarkTransport(f"postmark://?endpoint={server.endpoint}")
    mailgun = MailgunTransport(f"mailgun://news.example.org?endpoint={server.endpoint}")
    words = []
    try:
        for transport in (postmark, mailgun):
            with pytest.raises((TransportError, ProviderPaused)) as refused:
                transport.send("notes@example.org", "reader@example.org", MESSAGE)
            words.append(str(refused.value))
    finally:
        postmark.close()
        mailgun.close()
    import base64

    basic = base64.b64encode(f"api:{MAILGUN_KEY}".encode()).decode()
    assert all(POSTMARK_TOKEN not in w and MAILGUN_KEY not in w and basic not in w for w in words)
    assert "[redacted]" in words[0]


@pytest.mark.parametrize(
    "url",
    [
        "postmark://?endpoint=http://api.postmarkapp.com",
        "mailgun://news.example.org?endpoint=http://10.0.0.5",
        "ses://eu-west-1?endpoint=http://ses.example.com",
        "postmark://?endpoint=ftp://127.0.0.1",
    ],
)
def test_a_plain_http_endpoint_off_this_machine_is_refused(keys: None, aws: None, url: str) -> None:
    cls = {"postmark": PostmarkTransport, "mailgun": MailgunTransport, "ses": SESTransport}
    with pytest.raises(ConfigError, match="https"):
        cls[url.split(":")[0]](url)


def test_control_characters_in_a_providers_words_reach_neither_the_database_nor_json(
    ready: Project, keys: None, scripted: Callable[[Respond], Scripted]
) -> None:
    def respond(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        if AUDIENCE[0].encode() in body:
            words = "'to' parameter is not a valid address\x00\x7f\x9b\u202e\x1b[2J"
            answer(handler, 400, {"message": words})
        else:
            answer(handler, 200, {"id": "<x@mg>"})

    server = scripted(respond)
    _send(ready, f"mailgun://news.example.org?endpoint={server.endpoint}")
    states = _states(ready)
    assert states[AUDIENCE[0]] == "failed" and "sending" not in states.values()
    shown = ready.run("deliveries", "show", "2022-W51", "--state", "failed", "--json")
    assert shown.exit_code == 0, shown.output
    text = shown.stdout
    json.loads(text)  # still one JSON document
    for bad in ("\x00", "\x7f", "\x9b", "\u202e", "\x1b", "\\u0000"):
        assert bad not in text


def test_a_run_of_sender_policy_refusals_pauses_and_fails_no_reader(
    ready: Project, smtp_server: SMTPServer
) -> None:
    """Gmail's 5.7.26 and Outlook.com's 5.7.515 refuse the sender, not the reader: their
    rows are deferred, none failed or suppressed, and five in a row pause the send."""
    refusals = [
        "550 5.7.26 This mail has been blocked because the sender is unauthenticated. "
        "Gmail requires all senders to authenticate with either SPF or DKIM.",
        "550 5.7.515 Access denied, sending domain example.org does not meet the required "
        "authentication level.",
    ]
    for n, email in enumerate(AUDIENCE):
        smtp_server.handler.data_replies[email] = refusals[n % 2]
    before = _suppressed(ready)
    result = ready.run("send", "2022-W51", "--json", "--connections", "1")
    assert result.exit_code == 75, result.output
    report = json.loads(result.stdout)
    assert "refusals in a row of the sender" in json.dumps(report)
    states = _states(ready)
    assert "failed" not in states.values() and "sent" not in states.values()
    assert list(states.values()).count("deferred") == 5
    assert _suppressed(ready) == before
    # One reader's own refusal is still theirs: a 5.1.1 fails and bounces that reader.
    smtp_server.handler.data_replies.clear()
    smtp_server.handler.data_replies[AUDIENCE[-1]] = "550 5.1.1 <x>: Recipient unknown"
    ready.run("send", "2022-W51", "--json", "--connections", "1")
    assert _states(ready)[AUDIENCE[-1]] == "failed"


def test_a_complaint_rate_at_gmails_line_pauses_the_send(
    ready: Project, smtp_server: SMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsletter.delivery import send as sending
    from newsletter.models import ApprovedIssue, FeedbackReport

    monkeypatch.setattr(sending, "COMPLAINT_MIN_DELIVERED", 5)  # the sample has 20 readers
    for email in AUDIENCE[10:]:
        smtp_server.handler.data_replies[email] = "451 4.3.0 Try again later"
    first = ready.run("send", "2022-W51", "--json", "--connections", "1")
    assert first.exit_code == 75
    assert list(_states(ready).values()).count("sent") == 10
    with Session(ready.engine()) as session:
        issue = session.exec(select(ApprovedIssue)).first()
        assert issue is not None
        complaint = FeedbackReport(
            fingerprint="f" * 64, origin="mailbox", source="test", kind="complaint",
            action="complained", issue_id=issue.id,
        )  # fmt: skip
        session.add(complaint)
        session.commit()
    smtp_server.handler.data_replies.clear()
    resent = ready.run("deliveries", "resend", "2022-W51", "--state", "deferred", "--yes")
    assert resent.exit_code == 0, resent.output
    before = len(smtp_server.received)
    again = ready.run("send", "2022-W51", "--json", "--connections", "1")
    assert again.exit_code == 75, again.output
    assert "complaints for 10 delivered" in again.stdout
    assert len(smtp_server.received) == before  # nobody more mailed
    assert list(_states(ready).values()).count("queued") == 10


def test_a_compressed_answer_is_read_and_its_inflated_size_bounded(
    keys: None, scripted: Callable[[Respond], Scripted]
) -> None:
    import gzip

    def compressed(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        data = gzip.compress(json.dumps({"ErrorCode": 0, "MessageID": "m-1"}).encode())
        answer(handler, 200, data, **{"Content-Encoding": "gzip"})

    server = scripted(compressed)
    postmark = PostmarkTransport(f"postmark://?endpoint={server.endpoint}")
    try:
        assert postmark.send("notes@example.org", "reader@example.org", MESSAGE) == "m-1"
        bomb = gzip.compress(b" " * (64 * 1024 * 1024))  # 64 MB of spaces in ~64 KB
        server.respond = lambda h, b: answer(h, 200, bomb, **{"Content-Encoding": "gzip"})
        with pytest.raises(TransportError) as inflated:
            postmark.send("notes@example.org", "reader@example.org", MESSAGE)
        assert inflated.value.stage == "after-dot"
    finally:
        postmark.close()
