"""A project ready to send (an approved sample issue, 20 active subscribers and a few who
must get nothing) and helpers to send it and read its ledger: a pytest plugin, shared by
the send and bounce tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from newsletter.audience import subscribers
from newsletter.models import Approval, ApprovedIssue
from newsletter.web.limits import Limits
from tests import returned
from tests.conftest import Project
from tests.smtpserver import Received, SMTPServer

AUDIENCE = [f"reader{n:02d}@example.org" for n in range(20)]


@pytest.fixture
def ready(collected: Project, smtp_server: SMTPServer) -> Project:
    """An approved sample issue, 20 active subscribers and a few who must get nothing."""
    text = collected.config_file.read_text()
    collected.config_file.write_text(
        text.replace('transport = "file://outbox"', f'transport = "{smtp_server.url}"')
    )
    made = collected.run("issue", "new", "--week", "2022-W51", "--author", "Asami Terajima")
    assert made.exit_code == 0, made.output
    path = collected.root / "issues" / "2022-W51.md"
    path.write_text(path.read_text() + "Dear readers.\n")
    assert collected.run("issue", "approve", "2022-W51").exit_code == 0
    with Session(collected.engine()) as session:
        for n, email in enumerate(AUDIENCE):
            subscribers.add(session, "war-notes", email, name=f"Reader {n}" if n % 2 else None)
        subscribers.add(session, "war-notes", "left@example.org")
        person = subscribers.require(session, "left@example.org")
        assert person.id is not None
        subscribers.unsubscribe(session, person.id, "war-notes")
        subscribers.add(session, "war-notes", "blocked@example.org")
        subscribers.suppress(session, "blocked@example.org", "manual")
        subscribers.request_subscription(session, "war-notes", "pending@example.org", None)
        session.commit()
    return collected


def send(project: Project, *args: str) -> tuple[int, dict[str, object]]:
    result = project.run("send", "2022-W51", "--json", "--connections", "3", *args)
    assert result.exit_code in (0, 1, 75), result.output
    return result.exit_code, json.loads(result.stdout)


def ledger(project: Project) -> dict[str, int]:
    report = json.loads(project.run("deliveries", "show", "2022-W51", "--json").stdout)
    return {state: n for state, n in report["counts"].items() if n}


@pytest.fixture
def sent(ready: Project, smtp_server: SMTPServer) -> dict[str, Received]:
    """The sample issue sent with a bounce address: what each reader got, by address."""
    text = ready.config_file.read_text()
    ready.config_file.write_text(
        text.replace(
            '# bounce_address = "bounces@news.example.org"',
            f'bounce_address = "{returned.BOUNCE_MAILBOX}"',
        )
    )
    code, report = send(ready)
    assert code == 0 and report["sent"] == len(AUDIENCE)
    return {item.recipients[0]: item for item in smtp_server.received}


@pytest.fixture
def drafted(ready: Project) -> Project:
    """The sample issue written and checked but never approved, 20 readers waiting."""
    with Session(ready.engine()) as session:
        session.delete(session.exec(select(ApprovedIssue)).one())
        for event in session.exec(select(Approval)).all():  # `issue approve`'s record
            session.delete(event)
        session.commit()
    return ready


@contextmanager
def site_client(
    project: Project, smtp_server: SMTPServer, limits: Limits | None = None
) -> Iterator[TestClient]:
    """The project's web app as https://news.example.org, its mail to the test SMTP server
    (and the form limits given, else the production ones)."""
    from newsletter.audience.tokens import load_key
    from newsletter.delivery.transport import open_transport
    from newsletter.web.app import create_app

    config = project.config
    app = create_app(
        config,
        project.engine(),
        load_key(config.signing_key_file),
        transport=lambda: open_transport(smtp_server.url, project.root),
        limits=limits,
    )
    with TestClient(app, base_url="https://news.example.org") as client:
        yield client
