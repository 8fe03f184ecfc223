"""More than one list in a database: every issue's footer links to the reader's
preferences, where they see their lists and leave one; a bad link is a 404."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
from sqlmodel import Session

from newsletter.audience import subscribers
from tests.conftest import Project
from tests.forms import press_confirm, served
from tests.liveweb import start
from tests.sending import AUDIENCE, send
from tests.smtpserver import SMTPServer


def test_a_reader_of_two_lists_manages_them_from_the_footer(
    ready: Project, smtp_server: SMTPServer
) -> None:
    with Session(ready.engine()) as session:
        subscribers.add(session, "kyiv-daily", AUDIENCE[0])
        session.commit()
    assert ready.run("issue", "approve", "2022-W51").exit_code == 0  # rendered with 2 lists
    assert send(ready)[0] == 0
    item = next(i for i in smtp_server.received if i.recipients[0] == AUDIENCE[0])
    html = item.message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = item.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    link = re.search(r'href="(https://news\.example\.org/preferences/[^"]+)"', html)
    assert link is not None and f"Manage your subscriptions: {link.group(1)}" in text
    server = start(ready, smtp_server, None)
    live = next(server)
    try:
        url = link.group(1).replace("https://news.example.org", live.base)
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200
        # The footer link travels with forwarded issues: it shows its own list only.
        assert "War Notes" in page.text and "Kyiv Daily" not in page.text
        assert "kyiv-daily" not in page.text
        refused = httpx.post(url, data={"newsletter": "kyiv-daily"}, timeout=10)
        assert refused.status_code == 200 and "You left" not in refused.text
        # The rest by a link mailed to the subscriber's own address.
        before = len(smtp_server.received)
        asked = httpx.post(f"{url}/link", timeout=10)
        assert asked.status_code == 200 and "Check your inbox" in asked.text
        deadline = time.monotonic() + 10
        while len(smtp_server.received) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        mailed = smtp_server.received[-1]
        assert mailed.recipients == [AUDIENCE[0]]
        body = mailed.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        manage = re.search(r"(http://127\.0\.0\.1:\d+/preferences/\S+)", body)
        assert manage is not None, body
        full = httpx.get(manage.group(1), timeout=10)
        assert full.status_code == 200
        assert "War Notes" in full.text and "Kyiv Daily" in full.text
        assert "Email me a link" not in full.text
        left = httpx.post(manage.group(1), data={"newsletter": "kyiv-daily"}, timeout=10)
        assert left.status_code == 200 and "You left kyiv-daily" in left.text
        # Someone else's list, or one that does not exist: nothing changes.
        assert httpx.post(url, data={"newsletter": "other"}, timeout=10).status_code == 200
        assert httpx.get(url[:-2] + "xx", timeout=10).status_code == 404
        # The manage link does not unsubscribe by itself, nor stand in for the footer's.
        assert httpx.post(f"{manage.group(1)}/link", timeout=10).status_code == 404
    finally:
        next(server, None)
    with Session(ready.engine()) as session:
        person = subscribers.require(session, AUDIENCE[0])
        daily = subscribers.subscription_of(session, person, "kyiv-daily")
        notes = subscribers.subscription_of(session, person, "war-notes")
        assert daily is not None and daily.status == "unsubscribed"
        assert notes is not None and notes.status == "active"


def test_with_one_list_there_is_no_preferences_link(
    ready: Project, smtp_server: SMTPServer
) -> None:
    assert send(ready)[0] == 0
    html = smtp_server.received[0].message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "/preferences/" not in html and "Manage your subscriptions" not in html


def _ukrainian_edition(project: Project, tmp_path: Path) -> None:
    """A second newsletter's folder on the same database, recorded by running a command."""
    from newsletter.project import init_project

    edition = tmp_path / "uk" / "newsletter.toml"
    edition.parent.mkdir()
    init_project(
        edition,
        name="Воєнні нотатки",
        timezone="Europe/Kyiv",
        sender="Notes <notes-uk@example.org>",
        base_url="https://news.example.org/uk",
    )
    text = edition.read_text().replace('language = "en"', 'language = "uk"')
    edition.write_text(text.replace('id = "', 'id = "war-notes-uk" # "', 1))
    assert project.run("--config", str(edition), "subscribers", "count").exit_code == 0


def test_one_form_and_one_confirmation_for_several_newsletters(
    project: Project, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    _ukrainian_edition(project, tmp_path)
    server = start(project, smtp_server, None)
    live = next(server)
    try:
        form = httpx.get(f"{live.base}/subscribe", timeout=10)
        assert 'name="list-war-notes-uk"' in form.text and "(Ukrainian)" in form.text
        chosen = {
            "served": served(live.project),
            "email": "olena@example.org",
            "list-war-notes": "on",
            "list-war-notes-uk": "on",
        }
        assert httpx.post(f"{live.base}/subscribe", data=chosen, timeout=10).status_code == 200
        deadline = time.monotonic() + 10
        while not smtp_server.received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(smtp_server.received) == 1  # one mail for both
        body = smtp_server.received[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "War Notes" in body and "Воєнні нотатки" in body
        link = re.search(r"(http://127\.0\.0\.1:\d+/confirm/\S+)", body)
        assert link is not None
        # The lists are signed: a link stretched to another list confirms nothing.
        stretched = link.group(1).replace("lists=war-notes,", "lists=other,war-notes,")
        assert press_confirm(httpx, live.project, stretched).status_code == 404
        done = press_confirm(httpx, live.project, link.group(1))
        assert done.status_code == 200 and "Воєнні нотатки" in done.text
    finally:
        next(server, None)
    shown = json.loads(project.run("subscribers", "show", "olena@example.org", "--json").stdout)
    assert [(s["newsletter"], s["status"]) for s in shown["subscriptions"]] == [
        ("war-notes", "active"),
        ("war-notes-uk", "active"),
    ]


def test_the_database_names_every_newsletter_it_serves(
    project: Project, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    """A second newsletter's folder on the same database: running any command with its
    config records it, and the first one's pages name it by its display name and language."""
    from newsletter.audience.tokens import load_key, make_token

    _ukrainian_edition(project, tmp_path)
    with Session(project.engine()) as session:
        subscribers.add(session, "war-notes", AUDIENCE[0])
        subscribers.add(session, "war-notes-uk", AUDIENCE[0])
        token_id = subscribers.require(session, AUDIENCE[0]).token_id
        session.commit()
    key = load_key(project.config.signing_key_file)
    token = make_token(key, "manage", "war-notes", token_id)
    server = start(project, smtp_server, None)
    live = next(server)
    try:
        page = httpx.get(f"{live.base}/preferences/{token}", timeout=10)
    finally:
        next(server, None)
    assert page.status_code == 200
    assert "Воєнні нотатки</strong> (Ukrainian)" in page.text
    assert "War Notes</strong>:" in page.text
    shown = json.loads(project.run("subscribers", "show", AUDIENCE[0], "--json").stdout)
    assert [
        (s["newsletter"], s["name"], s["language"], s["status"]) for s in shown["subscriptions"]
    ] == [
        ("war-notes", "War Notes", "en", "active"),
        ("war-notes-uk", "Воєнні нотатки", "uk", "active"),
    ]


def test_the_mailed_manage_page_offers_the_other_newsletters_through_their_opt_in(
    project: Project, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    from newsletter.audience.tokens import load_key, make_token

    _ukrainian_edition(project, tmp_path)
    with Session(project.engine()) as session:
        subscribers.add(session, "war-notes", AUDIENCE[0])
        token_id = subscribers.require(session, AUDIENCE[0]).token_id
        session.commit()
    key = load_key(project.config.signing_key_file)
    manage = make_token(key, "manage", "war-notes", token_id)
    footer = make_token(key, "unsubscribe", "war-notes", token_id)
    server = start(project, smtp_server, None)
    live = next(server)
    try:
        page = httpx.get(f"{live.base}/preferences/{manage}", timeout=10)
        assert "Our other newsletters" in page.text and 'value="war-notes-uk"' in page.text
        footer_page = httpx.get(f"{live.base}/preferences/{footer}", timeout=10)
        assert "war-notes-uk" not in footer_page.text
        refused = httpx.post(
            f"{live.base}/preferences/{footer}/join",
            data={"newsletter": "war-notes-uk"},
            timeout=10,
        )
        assert refused.status_code == 404
        asked = httpx.post(
            f"{live.base}/preferences/{manage}/join",
            data={"newsletter": "war-notes-uk"},
            timeout=10,
        )
        assert asked.status_code == 200 and "Воєнні нотатки" in asked.text
        deadline = time.monotonic() + 10
        while not smtp_server.received and time.monotonic() < deadline:
            time.sleep(0.05)
        body = smtp_server.received[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        link = re.search(r"(http://127\.0\.0\.1:\d+/confirm/\S+)", body)
        assert link is not None and "Воєнні нотатки" in body
        # Nothing changes before the click: joining goes through the double opt-in.
        with Session(project.engine()) as session:
            person = subscribers.require(session, AUDIENCE[0])
            waiting = subscribers.subscription_of(session, person, "war-notes-uk")
            assert waiting is not None and waiting.status == "pending"
        assert press_confirm(httpx, live.project, link.group(1)).status_code == 200
    finally:
        next(server, None)
    with Session(project.engine()) as session:
        person = subscribers.require(session, AUDIENCE[0])
        joined = subscribers.subscription_of(session, person, "war-notes-uk")
        assert joined is not None and joined.status == "active"
