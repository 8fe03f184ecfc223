"""Small servers on 127.0.0.1 that follow Postmark's and Mailgun's documented endpoints
(POST /email with X-Postmark-Server-Token; POST /v3/DOMAIN/messages.mime with HTTP basic
auth "api:KEY"), and answer as those providers do: an accepted message with its id, a
refused recipient, 429 with Retry-After, 5xx, a reply that never comes in time, 401.

What each recipient gets is chosen by its local part: `bad-...` (refused), `busy-...` (429
the first time, accepted after), `down-...` (500), `slow-...` (accepted, but the answer
comes after the client's timeout)."""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
import uuid
from base64 import b64decode
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

POSTMARK_TOKEN = "postmark-test-token"
MAILGUN_KEY = "key-mailgun-test"
SLOW_SECONDS = 2.5


@dataclass
class Provider:
    kind: str  # "postmark" or "mailgun"
    port: int = 0
    accepted: dict[str, bytes | dict[str, object]] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    throttled: set[str] = field(default_factory=set)
    calls: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _mode(recipient: str) -> str:
    return recipient.split("-", 1)[0] if "-" in recipient.split("@")[0] else "ok"


def _handler(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def answer(self, status: int, body: dict[str, object], **headers: str) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            try:
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up waiting (the slow case)

        def do_POST(self) -> None:  # noqa: N802
            provider.calls += 1
            size = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(size)
            if provider.kind == "postmark":
                self.postmark(body)
            else:
                self.mailgun(body)

        def outcome(
            self, recipient: str, accept: object, refuse: tuple[int, dict[str, object]]
        ) -> None:
            mode = _mode(recipient)
            if mode == "bad":
                self.answer(*refuse)
                return
            if mode == "down":
                self.answer(500, {"message": "Internal Server Error", "Message": "Internal"})
                return
            if mode == "busy" and recipient not in provider.throttled:
                provider.throttled.add(recipient)
                self.answer(429, {"message": "Too many requests", "Message": "Rate limit"},
                            **{"Retry-After": "1"})  # fmt: skip
                return
            ident = str(uuid.uuid4())
            provider.accepted[recipient] = accept  # type: ignore[assignment]
            provider.ids[recipient] = ident
            if mode == "slow":
                time.sleep(SLOW_SECONDS)
            if provider.kind == "postmark":
                self.answer(200, {"To": recipient, "MessageID": ident, "ErrorCode": 0,
                                  "Message": "OK"})  # fmt: skip
            else:
                self.answer(200, {"id": f"<{ident}@mg.example.org>",
                                  "message": "Queued. Thank you."})  # fmt: skip
                provider.ids[recipient] = f"{ident}@mg.example.org"

        def postmark(self, body: bytes) -> None:
            if self.headers.get("X-Postmark-Server-Token") != POSTMARK_TOKEN:
                self.answer(401, {"ErrorCode": 10, "Message": "Bad or missing Server API token."})
                return
            if self.path == "/email/batch":
                self.postmark_batch(json.loads(body))
                return
            if self.path != "/email":
                self.answer(404, {"ErrorCode": 404, "Message": "Not found"})
                return
            message = json.loads(body)
            recipient = str(message["To"]).rsplit("<", 1)[-1].rstrip(">")
            refuse = (422, {"ErrorCode": 406, "Message": "You tried to send to recipient(s) "
                            "that have been marked as inactive."})  # fmt: skip
            self.outcome(recipient, message, refuse)

        def postmark_batch(self, messages: list[dict[str, object]]) -> None:
            """Postmark's batch: an answer per message, in order; a 429 or 500 is the whole
            request's (as a throttle or an outage is)."""
            recipients = [str(m["To"]).rsplit("<", 1)[-1].rstrip(">") for m in messages]
            modes = {_mode(r) for r in recipients}
            if "down" in modes:
                self.answer(500, {"ErrorCode": 500, "Message": "Internal"})
                return
            busy = [r for r in recipients if _mode(r) == "busy" and r not in provider.throttled]
            if busy:
                provider.throttled.update(busy)
                self.answer(
                    429, {"ErrorCode": 429, "Message": "Rate limit"}, **{"Retry-After": "1"}
                )
                return
            results: list[dict[str, object]] = []
            for recipient, message in zip(recipients, messages, strict=True):
                if _mode(recipient) == "bad":
                    results.append({"ErrorCode": 406, "Message": "Inactive recipient",
                                    "To": recipient})  # fmt: skip
                    continue
                ident = str(uuid.uuid4())
                provider.accepted[recipient] = message
                provider.ids[recipient] = ident
                results.append({"ErrorCode": 0, "Message": "OK", "MessageID": ident,
                                "To": recipient})  # fmt: skip
            if "slow" in modes:
                time.sleep(SLOW_SECONDS)
            data = json.dumps(results).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except OSError:
                pass

        def mailgun(self, body: bytes) -> None:
            auth = self.headers.get("Authorization", "")
            if (
                not auth.startswith("Basic ")
                or b64decode(auth[6:]) != f"api:{MAILGUN_KEY}".encode()
            ):
                self.answer(401, {"message": "Invalid private key"})
                return
            if not self.path.startswith("/v3/") or not self.path.endswith("/messages.mime"):
                self.answer(404, {"message": "not found"})
                return
            form = email.message_from_bytes(
                b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body,
                policy=email.policy.HTTP,
            )
            fields = {
                part.get_param("name", header="content-disposition"): _bytes(part)
                for part in form.iter_parts()
            }
            recipient = fields["to"].decode()
            refuse = (400, {"message": "to parameter is not a valid address. please check "
                            "documentation"})  # fmt: skip
            self.outcome(recipient, fields["message"], refuse)

    return Handler


def _bytes(part: email.message.Message) -> bytes:
    """A form field's bytes (a message/rfc822 file part is parsed into a message)."""
    data = part.get_payload(decode=True)
    if isinstance(data, bytes):
        return data
    inner = part.get_payload()
    if isinstance(inner, list) and inner:
        return inner[0].as_bytes(policy=email.policy.SMTP)
    return str(inner).encode()


def _serve(provider: Provider) -> Iterator[Provider]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(provider))
    server.daemon_threads = True
    provider.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def postmark_server() -> Iterator[Provider]:
    yield from _serve(Provider("postmark"))


@pytest.fixture
def mailgun_server() -> Iterator[Provider]:
    yield from _serve(Provider("mailgun"))
