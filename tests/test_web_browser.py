"""The subscriber's whole journey in real Chromium against a live server: subscribe, read
the confirmation from a real SMTP server, confirm, unsubscribe by the page's button; and an
RFC 8058 one-click POST as a mailbox provider sends it."""

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser
from sqlmodel import Session

from newsletter import subscribers as people
from newsletter.tokens import load_key, signed_url
from newsletter.web import create_app
from tests.conftest import Project
from tests.smtpserver import SMTPServer, free_port


@dataclass
class Live:
    base: str
    project: Project


@pytest.fixture
def live(project: Project, smtp_server: SMTPServer) -> Iterator[Live]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    text = project.config_file.read_text().replace("https://news.example.org", base)
    text = text.replace('transport = "file://outbox"', f'transport = "{smtp_server.url}"')
    project.config_file.write_text(text)
    config = project.config
    app = create_app(config, project.engine(), load_key(config.signing_key_file))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield Live(base, project)
    server.should_exit = True
    thread.join(timeout=10)


def status_of(project: Project, email: str) -> str | None:
    with Session(project.engine()) as session:
        person = people.find(session, email)
        subscription = people.subscription_of(session, person, "war-notes") if person else None
        return subscription.status if subscription else None


def test_subscribe_confirm_unsubscribe_in_chromium(
    live: Live, smtp_server: SMTPServer, browser: Browser
) -> None:
    for width in (375, 1024):
        page = browser.new_page(viewport={"width": width, "height": 800})
        page.goto(f"{live.base}/subscribe")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=str(live.project.root / f"subscribe-{width}.png"), full_page=True)
        page.close()

    page = browser.new_page(viewport={"width": 375, "height": 800})
    page.goto(f"{live.base}/subscribe")
    page.get_by_label("Email address").fill("olena@example.org")
    page.get_by_label("First name").fill("Olena")
    page.get_by_role("button", name="Subscribe").click()
    page.wait_for_selector("text=Check your inbox")
    assert status_of(live.project, "olena@example.org") == "pending"

    deadline = time.monotonic() + 10
    while not smtp_server.received and time.monotonic() < deadline:
        time.sleep(0.05)
    (mail,) = smtp_server.received
    html = mail.message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    link = re.search(r'href="([^"]+/confirm/[^"]+)"', html)
    assert link and link[1].startswith(live.base)
    page.goto(link[1])
    assert page.locator("h1").inner_text() == "You are subscribed"
    assert status_of(live.project, "olena@example.org") == "active"

    key = load_key(live.project.config.signing_key_file)
    with Session(live.project.engine()) as session:
        person = people.require(session, "olena@example.org")
        assert person.id is not None
        unsubscribe_url = signed_url(live.base, key, "unsubscribe", "war-notes", person.token_id)
    page.goto(unsubscribe_url)
    assert status_of(live.project, "olena@example.org") == "active"  # opening it changes nothing
    page.get_by_role("button", name="Unsubscribe").click()
    page.wait_for_selector("text=You are unsubscribed")
    assert status_of(live.project, "olena@example.org") == "unsubscribed"
    page.close()


def test_rfc8058_one_click_post_to_the_live_server(live: Live) -> None:
    assert live.project.run("subscribers", "add", "bob@example.org").exit_code == 0
    key = load_key(live.project.config.signing_key_file)
    with Session(live.project.engine()) as session:
        person = people.require(session, "bob@example.org")
        assert person.id is not None
        url = signed_url(live.base, key, "unsubscribe", "war-notes", person.token_id)
    response = httpx.post(
        url,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200 and not response.cookies
    assert status_of(live.project, "bob@example.org") == "unsubscribed"
