"""Running the app under uvicorn: the port checked first, tokens kept out of the logs."""

from __future__ import annotations

import logging
import re
import socket

from fastapi import FastAPI

from newsletter.errors import UsageError

_TOKEN_PATH = re.compile(r"(/(?:confirm|unsubscribe|preferences)/)[^/?\s\"]+")
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
