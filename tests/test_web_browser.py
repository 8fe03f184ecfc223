"""The subscriber's whole journey in real Chromium against a live server: subscribe, read
the confirmation from a real SMTP server, confirm, unsubscribe by the page's button; and an
RFC 8058 one-click POST as a mailbox provider sends it."""

import re
import time

import httpx
from playwright.sync_api import Browser
from sqlmodel import Session

from newsletter.audience import subscribers
from newsletter.audience.tokens import load_key, signed_url
from tests.conftest import Project
from tests.liveweb import Live
from tests.smtpserver import SMTPServer


def status_of(project: Project, email: str) -> str | None:
    with Session(project.engine()) as session:
        person = subscribers.find(session, email)
        subscription = subscribers.subscription_of(session, person, "war-notes") if person else None
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
    page.wait_for_timeout(2100)  # a form posted at once is a bot's (web/human.py)
    page.get_by_role("button", name="Subscribe").click()
    page.wait_for_selector("text=Check your inbox")
    # The answer comes first and the work after it (so timing tells nothing): wait for it.
    deadline = time.monotonic() + 10
    while not smtp_server.received and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status_of(live.project, "olena@example.org") == "pending"
    (mail,) = smtp_server.received
    html = mail.message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    link = re.search(r'href="([^"]+/confirm/[^"]+)"', html)
    assert link and link[1].startswith(live.base)
    page.goto(link[1])
    assert status_of(live.project, "olena@example.org") == "pending"  # opening it changes nothing
    page.wait_for_timeout(2100)
    page.get_by_role("button", name="Confirm my subscription").click()
    page.wait_for_selector("h1")
    assert page.locator("h1").inner_text() == "You are subscribed"
    assert status_of(live.project, "olena@example.org") == "active"

    key = load_key(live.project.config.signing_key_file)
    with Session(live.project.engine()) as session:
        person = subscribers.require(session, "olena@example.org")
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
        person = subscribers.require(session, "bob@example.org")
        assert person.id is not None
        url = signed_url(live.base, key, "unsubscribe", "war-notes", person.token_id)
    response = httpx.post(
        url,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200 and not response.cookies
    assert status_of(live.project, "bob@example.org") == "unsubscribed"
