"""The welcome mail: a confirmation brings it once, through the ledger, with the latest
issue's lead and headlines, the issue's footer, List-Unsubscribe, VERP and DKIM; a transport
that is down delays it to `send --due`; imports send none unless --welcome; on both
databases, over a real SMTP socket."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from newsletter.audience import subscribers
from newsletter.audience.tokens import load_key
from newsletter.delivery.transport import open_transport
from newsletter.web.app import create_app
from tests import returned
from tests.conftest import Project
from tests.forms import press_confirm, served
from tests.sending import AUDIENCE, send
from tests.smtpserver import Received, SMTPServer, free_port

HEADLINE = "Bakhmut defenders hold the line"  # the sample week's first article


def _client(project: Project, transport: str) -> TestClient:
    config = project.config
    app = create_app(
        config,
        project.engine(),
        load_key(config.signing_key_file),
        transport=lambda: open_transport(transport, project.root),
    )
    return TestClient(app, base_url="https://news.example.org")


@pytest.fixture
def issued(ready: Project, smtp_server: SMTPServer) -> Iterator[Project]:
    """The sample issue sent to its readers, a bounce mailbox set; the SMTP server emptied."""
    text = ready.config_file.read_text().replace(
        '# bounce_address = "bounces@news.example.org"',
        f'bounce_address = "{returned.BOUNCE_MAILBOX}"',
    )
    ready.config_file.write_text(text)
    assert send(ready)[0] == 0
    smtp_server.received.clear()
    yield ready


def _subscribe(client: TestClient, smtp_server: SMTPServer, email: str) -> str:
    """The form, then the confirmation's link (its path)."""
    assert (
        client.post(
            "/subscribe", data={"served": served(client), "email": email, "name": "Olena"}
        ).status_code
        == 200
    )
    mail = smtp_server.received[-1]
    assert mail.recipients == [email]
    body = mail.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    found = re.search(r"https://news\.example\.org(/confirm/\S+)", body)
    assert found, body
    return found[1]


def _parts(item: Received) -> tuple[str, str]:
    message = item.message
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    return html, text


def _ledger(project: Project, *args: str) -> dict[str, object]:
    result = project.run("deliveries", "show", "welcome", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_confirmation_brings_the_welcome_once_with_the_latest_issue(
    issued: Project, smtp_server: SMTPServer
) -> None:
    with _client(issued, smtp_server.url) as client:
        link = _subscribe(client, smtp_server, "olena@example.org")
        smtp_server.received.clear()
        assert "You are subscribed" in press_confirm(client, client, link).text
        (mail,) = smtp_server.received
        # A second click, a second confirmation: no second welcome.
        assert press_confirm(client, client, link).status_code == 200
        again = client.post(
            "/subscribe", data={"served": served(client), "email": "olena@example.org"}
        )
        assert again.status_code == 200  # active: no mail at all
    assert len(smtp_server.received) == 1
    message = mail.message
    assert mail.recipients == ["olena@example.org"]
    assert message["Subject"] == "Welcome to War Notes"
    # The issue's headers: one-click unsubscribe, VERP naming the ledger row.
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "https://news.example.org/unsubscribe/" in message["List-Unsubscribe"]
    assert mail.sender.startswith("bounces+b-") and mail.sender.endswith("@example.org")
    html, text = _parts(mail)
    assert "Hello, Olena," in text and "Thank you for subscribing to War Notes" in text
    assert "THE LATEST ISSUE" in text and HEADLINE in text
    # Every headline of the issue, linked, in both parts; the whole issue a click away.
    with Session(issued.engine()) as session:
        from newsletter.delivery.welcome import latest_issue

        latest = latest_issue(session, "war-notes")
        assert latest is not None and latest.outline is not None
        headlines = latest.outline["headlines"]
    assert len(headlines) >= 3
    for headline in headlines:
        assert headline["url"] in text and f'href="{headline["url"]}"' in html
    assert "Dear readers." in text  # the issue's lead
    assert "https://news.example.org/archive/2022-W51/" in text
    assert re.search(r'href="https://news\.example\.org/unsubscribe/[^"]+"', html)
    assert "%%" not in html + text
    shown = _ledger(issued)
    assert shown["counts"]["sent"] == 1  # type: ignore[index]


def test_a_transport_that_is_down_delays_the_welcome_to_send_due(
    issued: Project, smtp_server: SMTPServer
) -> None:
    dead = f"smtp://127.0.0.1:{free_port()}"
    with _client(issued, smtp_server.url) as client:
        link = _subscribe(client, smtp_server, "olena@example.org")
    smtp_server.received.clear()
    with _client(issued, dead) as client:
        assert (
            "You are subscribed" in press_confirm(client, client, link).text
        )  # the reader sees no trouble
    assert smtp_server.received == []
    waiting = _ledger(issued)["counts"]
    assert waiting["deferred"] + waiting["queued"] == 1  # type: ignore[index]
    # The scheduler's next run: the retry is due later, so make it due now.
    with Session(issued.engine()) as session:
        from sqlalchemy import text

        session.execute(text("UPDATE deliveries SET next_attempt_at = created_at"))
        session.commit()
    result = issued.run("send", "--due", "--json")
    assert result.exit_code == 0, result.output
    slugs = [r["slug"] for r in json.loads(result.stdout)["issues"]]
    assert slugs == ["welcome"]
    (mail,) = smtp_server.received
    assert mail.recipients == ["olena@example.org"]
    assert mail.message["Subject"] == "Welcome to War Notes"
    assert _ledger(issued)["counts"]["sent"] == 1  # type: ignore[index]
    # Nothing more waits: the next run sends nothing.
    again = issued.run("send", "--due")
    assert again.exit_code == 0 and "Nothing due." in again.stdout
    assert len(smtp_server.received) == 1


def test_a_welcome_in_doubt_is_named_and_never_sent_twice_blindly(
    issued: Project, smtp_server: SMTPServer
) -> None:
    smtp_server.handler.drop_after_data.add("olena@example.org")
    result = issued.run("subscribers", "add", "olena@example.org", "--welcome")
    assert result.exit_code == 0, result.output
    assert "waiting 1" in result.stderr
    shown = _ledger(issued, "--state", "unknown")
    assert [row["email"] for row in shown["rows"]] == ["olena@example.org"]  # type: ignore[index]
    assert issued.run("send", "--due").stdout.strip() == "Nothing due."
    smtp_server.handler.drop_after_data.clear()
    smtp_server.received.clear()
    assert issued.run("deliveries", "resolve", "welcome", "--resend").exit_code == 0
    assert issued.run("send", "--due").exit_code == 0
    assert [m.recipients for m in smtp_server.received] == [["olena@example.org"]]


def test_imports_send_no_welcome_unless_asked(
    issued: Project, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    quiet = tmp_path / "quiet.csv"
    quiet.write_text("email\nquiet@example.org\n" + AUDIENCE[0] + "\n")
    assert issued.run("subscribers", "import", str(quiet)).exit_code == 0
    assert smtp_server.received == []
    loud = tmp_path / "loud.csv"
    # Only subscriptions the import begins: a reader of old is no newcomer.
    loud.write_text("email,name\nnew@example.org,Taras\n" + AUDIENCE[1] + ",\n")
    result = issued.run("subscribers", "import", str(loud), "--welcome", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["welcomed"] == 1
    assert [m.recipients for m in smtp_server.received] == [["new@example.org"]]
    assert "Hello, Taras," in _parts(smtp_server.received[0])[1]
    # The same file again: once per subscription.
    assert issued.run("subscribers", "import", str(loud), "--welcome").exit_code == 0
    assert len(smtp_server.received) == 1


def test_a_bounced_welcome_acts_as_an_issues_bounce(
    issued: Project, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    assert issued.run("subscribers", "add", "gone@example.org", "--welcome").exit_code == 0
    (mail,) = smtp_server.received
    bounce = returned.dsn(mail, "5.1.1", "550 5.1.1 no such user")
    folder = tmp_path / "bounces"
    returned.write_maildir(folder, [bounce])
    result = issued.run("bounces", "process", str(folder))
    assert result.exit_code == 0, result.output
    with Session(issued.engine()) as session:
        person = subscribers.require(session, "gone@example.org")
        subscription = subscribers.subscription_of(session, person, "war-notes")
        assert subscription is not None and subscription.status == "bounced"


def test_the_welcome_can_be_the_whole_issue_or_the_editors_words_or_off(
    issued: Project, smtp_server: SMTPServer
) -> None:
    (issued.root / "welcome.md").write_text("Welcome aboard, from **Asami**.\n")
    text = (
        issued.config_file.read_text()
        .replace('include = "headlines"', 'include = "issue"')
        .replace('# text_file = "welcome.md"', 'text_file = "welcome.md"')
    )
    issued.config_file.write_text(
        text.replace('# subject = "Welcome to War Notes"', 'subject = "You are in"')
    )
    assert issued.run("subscribers", "add", "whole@example.org", "--welcome").exit_code == 0
    (mail,) = smtp_server.received
    html, body = _parts(mail)
    assert mail.message["Subject"] == "You are in"
    assert "<strong>Asami</strong>" in html and "Welcome aboard, from Asami." in body
    # The issue itself follows, its own greeting and cards included.
    assert body.index("Welcome aboard") < body.index("Hello, reader,") < body.index(HEADLINE)
    issued.config_file.write_text(
        issued.config_file.read_text().replace("enabled = true", "enabled = false", 1)
    )
    refused = issued.run("subscribers", "add", "off@example.org", "--welcome")
    assert refused.exit_code == 2 and "enabled = false" in refused.stderr
    assert issued.run("subscribers", "add", "off@example.org").exit_code == 0
    assert len(smtp_server.received) == 1


def test_two_newsletters_on_one_database_each_send_their_own_2022_w51(
    ready: Project, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    """The Ukrainian edition approves the same week: each folder's `send --due` sends its own
    issue to its own readers, and neither approval replaces the other."""
    other = tmp_path / "uk"
    (other / "issues").mkdir(parents=True)
    config = ready.config_file.read_text()
    config = config.replace('id = "war-notes"', 'id = "war-notes-uk"')
    config = config.replace('name = "War Notes"', 'name = "Воєнні нотатки"', 1)
    (other / "newsletter.toml").write_text(config.replace('language = "en"', 'language = "uk"'))
    (other / "newsletter.key").write_bytes((ready.root / "newsletter.key").read_bytes())
    (other / "newsletter.key").chmod(0o600)
    (other / "issues" / "2022-W51.md").write_text(
        (ready.root / "issues" / "2022-W51.md").read_text()
    )
    uk = ["--config", str(other / "newsletter.toml")]
    assert ready.run(*uk, "subscribers", "add", "reader@example.org").exit_code == 0
    approved = ready.run(*uk, "issue", "approve", "2022-W51", "--send-at", "2022-12-26T08:00")
    assert approved.exit_code == 0, approved.output
    english = ready.run("issue", "approve", "2022-W51", "--send-at", "2022-12-26T08:00")
    assert english.exit_code == 0, english.output
    uk_send = ready.run(*uk, "send", "--due")
    assert uk_send.exit_code == 0, uk_send.output
    assert [m.recipients for m in smtp_server.received] == [["reader@example.org"]]
    assert "Вітаємо, друже!" in _parts(smtp_server.received[0])[1]
    assert ready.run("send", "--due").exit_code == 0
    assert len(smtp_server.received) == 1 + len(AUDIENCE)
    subjects = {m.message["Subject"] for m in smtp_server.received}
    assert len(subjects) == 1  # the same file, both approved


def test_a_reader_who_joins_both_editions_gets_each_welcome_in_its_language(
    issued: Project, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    """One form on the English server, both boxes ticked: the English welcome comes at
    once; the Ukrainian one waits in the ledger for its own folder's `send --due`, and
    comes in Ukrainian."""
    other = tmp_path / "uk"
    other.mkdir()
    config = issued.config_file.read_text()
    config = config.replace('id = "war-notes"', 'id = "war-notes-uk"')
    config = config.replace('name = "War Notes"', 'name = "Воєнні нотатки"', 1)
    (other / "newsletter.toml").write_text(config.replace('language = "en"', 'language = "uk"'))
    (other / "newsletter.key").write_bytes((issued.root / "newsletter.key").read_bytes())
    (other / "newsletter.key").chmod(0o600)
    uk = ["--config", str(other / "newsletter.toml")]
    assert issued.run(*uk, "subscribers", "count").exit_code == 0  # recorded in the registry
    with _client(issued, smtp_server.url) as client:
        both = {
            "served": served(client),
            "email": "olena@example.org",
            "list-war-notes": "on",
            "list-war-notes-uk": "on",
        }
        assert client.post("/subscribe", data=both).status_code == 200
        body = smtp_server.received[-1].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        link = re.search(r"https://news\.example\.org(/confirm/\S+)", body)
        assert link is not None
        smtp_server.received.clear()
        assert "Воєнні нотатки" in press_confirm(client, client, link[1]).text
    assert [m.message["Subject"] for m in smtp_server.received] == ["Welcome to War Notes"]
    waiting = issued.run(*uk, "deliveries", "show", "welcome", "--json")
    assert json.loads(waiting.stdout)["counts"]["queued"] == 1
    sent = issued.run(*uk, "send", "--due")
    assert sent.exit_code == 0, sent.output
    mail = smtp_server.received[-1]
    assert mail.recipients == ["olena@example.org"]
    assert mail.message["Subject"] == "Ви підписалися на Воєнні нотатки"
    assert "Дякуємо, що підписалися" in _parts(mail)[1]
