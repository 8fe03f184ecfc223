"""More than one list in a database: every issue's footer links to the reader's
preferences, where they see their lists and leave one; a bad link is a 404."""

from __future__ import annotations

import re
import time

import httpx
from sqlmodel import Session

from newsletter.audience import subscribers
from tests.conftest import Project
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
    served = start(ready, smtp_server, None)
    live = next(served)
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
        next(served, None)
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
