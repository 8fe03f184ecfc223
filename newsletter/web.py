"""The few web endpoints: subscribe (double opt-in), confirm, unsubscribe, archive.

- `POST /subscribe` answers the same whether the address is new, pending, active or
  suppressed, so the form cannot be used to learn who subscribes. A hidden honeypot field and
  per-IP and per-address limits stop bots and list bombing (signing a stranger up again and
  again); the per-address limit also caps how often one inbox gets a confirmation email.
- `GET /unsubscribe/{token}` only shows a button: mail scanners open every link in a message,
  and a GET that unsubscribed would unsubscribe people who never clicked. `POST` unsubscribes,
  at once, idempotently, with a 200 and no redirect or cookie, as RFC 8058 one-click requires
  (Gmail and Yahoo post `List-Unsubscribe=One-Click`); the page's button posts the same body.
- A bad token of any kind gets the same 404 page.
- Responses forbid framing and sniffing, send no Referer (links carry tokens) and are not
  cached.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qs

from fastapi import BackgroundTasks, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from newsletter import subscribers
from newsletter.approval import approved
from newsletter.archive import feed_xml, index_html
from newsletter.config import Config
from newsletter.db import session_scope
from newsletter.errors import InvalidAddress, NewsletterError, UsageError
from newsletter.mail import confirmation_message, sender
from newsletter.models import ApprovedIssue
from newsletter.render import environment, render_template
from newsletter.tokens import Token, read_token, signed_url
from newsletter.transport import Transport, open_transport

log = logging.getLogger("newsletter.web")
MAX_FORM_BYTES = 16 * 1024
ONE_CLICK = "One-Click"


class RequestLimiter:
    """At most `limit` events per key in `window` seconds, in this process's memory (which
    is enough for one server; behind several, put the limit in the proxy too)."""

    def __init__(self, limit: int, window: float, max_keys: int = 100_000) -> None:
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str, now: float | None = None) -> bool:
        moment = time.monotonic() if now is None else now
        with self._lock:
            events = self._events.pop(key, deque())
            while events and events[0] <= moment - self.window:
                events.popleft()
            allowed = len(events) < self.limit
            if allowed:
                events.append(moment)
            self._events[key] = events
            while len(self._events) > self.max_keys:
                self._events.popitem(last=False)
            return allowed


@dataclass
class Limits:
    per_ip: RequestLimiter
    per_address: RequestLimiter


def create_app(
    config: Config,
    engine: Engine,
    key: bytes,
    *,
    transport: Callable[[], Transport] | None = None,
    limits: Limits | None = None,
) -> FastAPI:
    app = FastAPI(title=config.name, docs_url=None, redoc_url=None, openapi_url=None)
    pages = environment(config, autoescape=True)
    limits = limits or Limits(RequestLimiter(10, 600), RequestLimiter(3, 3600))
    make_transport = transport or (lambda: open_transport(config.transport, config.root))
    site = {"name": config.name, "language": config.language, "base_url": config.base_url}

    def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = render_template(pages, f"web/{template}.html.j2", {"newsletter": site} | context)
        return HTMLResponse(html, status_code=status)

    def invalid_link() -> HTMLResponse:
        return page(
            "message",
            404,
            title="This link is not valid",
            text="It may be mistyped, or it has expired. Nothing was changed.",
        )

    @app.middleware("http")
    async def headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        return _secured(await call_next(request), request.url.path)

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception) -> Response:
        # Starlette answers an unhandled error outside every middleware: the page and its
        # headers are set here. The traceback goes to the log with the token redacted.
        log.error(
            "error answering %s %s: %s",
            request.method,
            redact(request.url.path),
            type(error).__name__,
            exc_info=(type(error), error, error.__traceback__),
        )
        response = page(
            "message", 500, title="Something went wrong", text="Nothing was changed. Try later."
        )
        return _secured(response, request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        titles = {404: "Not found", 405: "Method not allowed"}
        response = page(
            "message",
            error.status_code,
            title=titles.get(error.status_code, "Request refused"),
            text=str(error.detail) if error.status_code not in titles else "",
        )
        if error.headers:
            response.headers.update(error.headers)
        return response

    async def form(request: Request) -> dict[str, str] | None:
        """The urlencoded or multipart body as a dict, or None when it is not a small,
        well-formed UTF-8 form. The body is read in pieces and refused as soon as it passes
        the cap, whether it declared its length or came chunked."""
        length = request.headers.get("content-length")
        if length is not None and (not _DIGITS.match(length) or int(length) > MAX_FORM_BYTES):
            return None
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in ("application/x-www-form-urlencoded", "multipart/form-data"):
            return None
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return None
        if kind == "application/x-www-form-urlencoded":
            return parse_urlencoded(bytes(body))
        return parse_multipart(request.headers.get("content-type", ""), bytes(body))

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/subscribe", status_code=303)

    @app.get("/subscribe", response_class=HTMLResponse)
    def subscribe_form() -> HTMLResponse:
        return page("subscribe", email="", name="", error=None)

    @app.post("/subscribe", response_class=HTMLResponse)
    async def subscribe(request: Request, background: BackgroundTasks) -> HTMLResponse:
        data = await form(request)
        if data is None or "email" not in data:
            return page(
                "subscribe", 400, email="", name="", error="Send the form with an email address."
            )
        email, name = data.get("email", "").strip(), data.get("name", "")
        sent = page(
            "message",
            title="Check your inbox",
            text=f"If {email} can be subscribed to {config.name}, a confirmation email "
            "is on its way. Click its link to start receiving the newsletter.",
        )
        if data.get("website"):  # the honeypot: people never see it, bots fill it in
            return sent
        ip = request.client.host if request.client else "unknown"
        if not limits.per_ip.allow(ip):
            return page(
                "message",
                429,
                title="Too many requests",
                text="Please wait a few minutes and try again.",
            )
        try:
            address = subscribers.parse_address(email)
        except InvalidAddress:
            return page(
                "subscribe",
                400,
                email=email,
                name=name,
                error="That does not look like an email address.",
            )
        if not limits.per_address.allow(address.key):
            return sent
        # The answer goes first and the work after it (a sync background task runs in the
        # thread pool, off the event loop): a new address and a known one cost the same
        # time to answer, so the timing cannot tell who subscribes.
        background.add_task(_request, address.email, name)
        return sent

    def _request(email: str, name: str) -> None:
        try:
            with session_scope(engine) as session:
                person = subscribers.request_subscription(session, config.key, email, name)
                if person is None:
                    return
                url = signed_url(config.base_url, key, "confirm", config.key, person.token_id)
                message = confirmation_message(config, person, url)
                to = person.email
            outbound = make_transport()
            try:
                outbound.send(sender(config).addr_spec, to, message)
            finally:
                outbound.close()
        except NewsletterError as error:
            log.error("confirmation email not sent: %s", error)
        except Exception as error:  # a background task has no one to answer to but the log
            log.error("confirmation email not sent: %s: %s", type(error).__name__, error)

    @app.get("/confirm/{token}", response_class=HTMLResponse)
    def confirm(token: str) -> HTMLResponse:
        proof = read_token(key, "confirm", config.key, token)
        if proof is None or proof.issued_at is None:
            return invalid_link()
        with session_scope(engine) as session:
            person = subscribers.by_token(session, proof)
            if person is None or not subscribers.confirm(
                session, person, config.key, proof.issued_at
            ):
                return invalid_link()
        return page(
            "message",
            title="You are subscribed",
            text=f"Thank you. {config.name} will arrive in your inbox.",
        )

    @app.get("/unsubscribe/{token}", response_class=HTMLResponse)
    def unsubscribe_page(token: str) -> HTMLResponse:
        if read_token(key, "unsubscribe", config.key, token) is None:
            return invalid_link()
        return page("unsubscribe", token=token)

    @app.post("/unsubscribe/{token}", response_class=HTMLResponse)
    async def unsubscribe(token: str, request: Request) -> HTMLResponse:
        proof = read_token(key, "unsubscribe", config.key, token)
        if proof is None:
            return invalid_link()
        data = await form(request)
        if data is None or data.get("List-Unsubscribe") != ONE_CLICK:
            return page(
                "message",
                400,
                title="Request refused",
                text="An unsubscribe request carries List-Unsubscribe=One-Click.",
            )
        if not await run_in_threadpool(_unsubscribe, proof):
            return invalid_link()
        return page(
            "message",
            title="You are unsubscribed",
            text=f"You will get no more emails from {config.name}.",
        )

    def _unsubscribe(proof: Token) -> bool:
        with session_scope(engine) as session:
            person = subscribers.by_token(session, proof)
            if person is None or person.id is None:
                return False
            subscribers.unsubscribe(session, person.id, config.key)
            return True

    @app.get("/archive/", response_class=HTMLResponse)
    def archive_index() -> HTMLResponse:
        with Session(engine) as session:
            return HTMLResponse(index_html(config, approved(session)))

    @app.get("/archive/feed.xml")
    def archive_feed() -> Response:
        with Session(engine) as session:
            body = feed_xml(config, approved(session))
        return Response(body, media_type="application/rss+xml")

    @app.get("/archive/{slug}/", response_class=HTMLResponse)
    def archive_issue(slug: str) -> HTMLResponse:
        with Session(engine) as session:
            row = session.exec(select(ApprovedIssue).where(ApprovedIssue.slug == slug)).first()
            if row is None:
                raise StarletteHTTPException(404)
            return HTMLResponse(row.web_html)

    @app.get("/archive/{slug}", include_in_schema=False)
    def archive_slash(slug: str) -> RedirectResponse:
        return RedirectResponse(f"/archive/{slug}/", status_code=308)

    return app


class RedactTokens(logging.Filter):
    """Takes the tokens out of uvicorn's access log lines (their arguments are client,
    method, path, HTTP version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact(value) if isinstance(value, str) else value for value in record.args
            )
        record.msg = redact(str(record.msg))
        return True


def run(app: FastAPI, *, host: str, port: int, proxy_headers: bool = False) -> None:
    """uvicorn with the access log redacted and small limits: a request's headers in 16 KB
    (uvicorn's h11 default), idle connections closed after 5 s."""
    import uvicorn

    check_listen(host, port)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            proxy_headers=proxy_headers,
            log_level="info",
            timeout_keep_alive=5,
        )
    )
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(RedactTokens())
    server.run()


def check_listen(host: str, port: int) -> None:
    """Fail with the fix before uvicorn starts: it would log a traceback-like error and exit
    1 on a port in use, and raise on one out of range."""
    if not 0 < port < 65536:
        raise UsageError(f"--port {port}: give a port from 1 to 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(infos[0][4])
    except OSError as error:
        reason = error.strerror or str(error)
        raise UsageError(
            f"cannot listen on {host}:{port}: {reason}; pick another --port or --host"
        ) from None


_DIGITS = re.compile(r"[0-9]{1,12}\Z")
_TOKEN_PATH = re.compile(r"(/(?:confirm|unsubscribe)/)[^/?\s\"]+")


def redact(text: str) -> str:
    """A request line or path with its confirm or unsubscribe token replaced: a token in a
    log is a working link to someone's subscription."""
    return _TOKEN_PATH.sub(r"\1[token]", text)


def _secured(response: Response, path: str) -> Response:
    """Every answer, error pages included: no framing, sniffing, Referer (links carry
    tokens) or caching of personal pages."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    if not path.startswith("/archive"):
        response.headers["Cache-Control"] = "no-store"
    return response


def parse_urlencoded(body: bytes) -> dict[str, str] | None:
    """Fields of a urlencoded form; None unless every byte and every %-escape is UTF-8 (a
    lossy decode would store and mail an address the person never typed)."""
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return None
    return {key: values[-1] for key, values in parsed.items()}


def parse_multipart(content_type: str, body: bytes) -> dict[str, str] | None:
    """Fields of a multipart form, each decoded as strict UTF-8; None for files, a broken
    body or bytes that are not UTF-8 (Starlette's parser would fall back to Latin-1)."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + body
    )
    if not message.is_multipart() or message.defects:
        return None
    fields: dict[str, str] = {}
    parts = message.get_payload()
    if not isinstance(parts, list) or len(parts) > 20:
        return None
    for part in parts:
        if not isinstance(part, Message):
            return None
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or part.get_param("filename", header="content-disposition"):
            return None
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            return None
        try:
            fields[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return fields
