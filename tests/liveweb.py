"""`newsletter serve`'s app on a real uvicorn server on 127.0.0.1, with the project's
confirmation mail going to the test SMTP server: what abuse tests must hit, because the
TestClient skips the HTTP parsing, streaming and background tasks of a real server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn

from newsletter.audience.tokens import load_key
from newsletter.web.app import create_app
from newsletter.web.limits import Limits, RequestLimiter
from newsletter.web.server import server_config
from tests.conftest import Project
from tests.smtpserver import SMTPServer, free_port


@dataclass
class Live:
    base: str
    project: Project
    port: int


def start(
    project: Project,
    smtp_server: SMTPServer,
    limits: Limits | None,
    *,
    keep_base_url: bool = False,
    hostname: str = "127.0.0.1",
) -> Iterator[Live]:
    """`hostname` names the server in its base URL ("localhost" where a browser needs a
    secure context, as WebAuthn does); it listens on 127.0.0.1 either way."""
    port = free_port()
    base = f"http://{hostname}:{port}"
    text = project.config_file.read_text()
    if not keep_base_url:
        text = text.replace("https://news.example.org", base)
    text = text.replace('transport = "file://outbox"', f'transport = "{smtp_server.url}"')
    project.config_file.write_text(text)
    config = project.config
    app = create_app(config, project.engine(), load_key(config.signing_key_file), limits=limits)
    server = uvicorn.Server(
        server_config(app, host="127.0.0.1", port=port, proxy_headers=False, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield Live(base, project, port)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def live(project: Project, smtp_server: SMTPServer) -> Iterator[Live]:
    """The server with its production rate limits."""
    yield from start(project, smtp_server, None)


@pytest.fixture
def live_unlimited(project: Project, smtp_server: SMTPServer) -> Iterator[Live]:
    """The server with limits high enough for a test's hundred requests."""
    limits = Limits(RequestLimiter(10_000, 600), RequestLimiter(10_000, 3600))
    yield from start(project, smtp_server, limits)
