"""Running the app under uvicorn: the port checked first, tokens kept out of the logs, and
connections bounded: a client that opens connections and never finishes its request
headers (slowloris) is cut off after a few seconds, and the server holds a bounded number
of connections, in all and per client address."""

from __future__ import annotations

import asyncio
import logging
import re
import resource
import socket
from typing import Any

import h11
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from newsletter import site_urls
from newsletter.errors import UsageError

HEADER_SECONDS = 5.0  # a request's headers, from the connection or the previous answer
BODY_SECONDS = 15.0  # then its body (forms and webhooks are small)
MAX_CONNECTIONS = 1000
MAX_PER_CLIENT = 100  # one address's share, when clients connect directly (no proxy)

_TOKEN_PATH = re.compile(
    r"(/(?:"
    + "|".join(site_urls.first_segment(route) for route in site_urls.SECRET_PATHS)
    + r")/)[^/?\s\"]+"
)
# A reader token names a ledger row: kept out of logs like the others.
_READER = re.compile(r"([?&][rm]=)[^&\s\"]+")


def redact(text: str) -> str:
    """A request line or path with its confirm or unsubscribe token replaced: a token in a
    log is a working link to someone's subscription."""
    return _READER.sub(r"\1[token]", _TOKEN_PATH.sub(r"\1[token]", text))


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


class BoundedProtocol(H11Protocol):
    """uvicorn's h11 protocol with deadlines on what the client sends: the headers within
    HEADER_SECONDS, the body within BODY_SECONDS more. uvicorn itself only times out idle
    keep-alive connections, so a request that never finishes held its connection, and its
    file descriptor, forever. Connections past MAX_CONNECTIONS (or MAX_PER_CLIENT from one
    address) are closed on arrival, before they cost more than the accept."""

    per_client_cap = True  # off behind a proxy: every connection comes from its address
    _timer: asyncio.TimerHandle | None = None
    _body_timed = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        client = self.client[0] if self.client else None
        same = 0
        for other in self.connections:
            address = getattr(other, "client", None)
            same += bool(address and address[0] == client)
        if len(self.connections) > MAX_CONNECTIONS or (
            self.per_client_cap and client is not None and same > MAX_PER_CLIENT
        ):
            transport.abort()
            return
        self._arm(HEADER_SECONDS)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and self._timer is None:
            self._arm(HEADER_SECONDS)  # the next request on a kept-alive connection

    def on_response_complete(self) -> None:
        self._disarm()
        self._body_timed = False
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        state = self.conn.their_state
        if state is h11.SEND_BODY and self.cycle is not None:
            if not self._body_timed:
                self._body_timed = True
                self._timer = self.loop.call_later(BODY_SECONDS, self._expired)
                return
        elif state is not h11.IDLE:
            return  # the request is in; the answer is the app's to give
        if not self.transport.is_closing():
            self.transport.abort()


def raise_file_limit(wanted: int = MAX_CONNECTIONS + 200) -> None:
    """Room for MAX_CONNECTIONS descriptors: the soft limit is often 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def server_config(app: FastAPI, *, host: str, port: int, proxy_headers: bool, **more: Any) -> Any:
    """uvicorn's configuration with our limits: the bounded protocol, keep-alive 5 s,
    headers in 16 KB (uvicorn's h11 default)."""
    import uvicorn

    protocol = type("Protocol", (BoundedProtocol,), {"per_client_cap": not proxy_headers})
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        proxy_headers=proxy_headers,
        timeout_keep_alive=5,
        http=protocol,
        **more,
    )


def run(app: FastAPI, *, host: str, port: int, proxy_headers: bool = False) -> None:
    """uvicorn with the access log redacted and the limits above."""
    import uvicorn

    check_listen(host, port)
    raise_file_limit()
    server = uvicorn.Server(
        server_config(app, host=host, port=port, proxy_headers=proxy_headers, log_level="info")
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
