"""The web endpoints: double opt-in over a real SMTP socket, confirm, one-click unsubscribe,
archive; on both databases."""

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from newsletter.audience import subscribers
from newsletter.audience.tokens import load_key, make_token, signed_url
from newsletter.web.limits import Limits, RequestLimiter
from tests.conftest import Project
from tests.forms import confirm_form, press_confirm, served
from tests.sending import site_client
from tests.smtpserver import SMTPServer


@pytest.fixture
def client(project: Project, smtp_server: SMTPServer) -> Iterator[TestClient]:
    with site_client(
        project, smtp_server, Limits(RequestLimiter(6, 600), RequestLimiter(2, 3600))
    ) as test_client:
        yield test_client


def status_of(project: Project, email: str) -> str | None:
    with Session(project.engine()) as session:
        person = subscribers.find(session, email)
        if person is None:
            return None
        subscription = subscribers.subscription_of(session, person, "war-notes")
        return subscription.status if subscription else None


def confirm_link(smtp_server: SMTPServer) -> str:
    text = smtp_server.received[-1].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    found = re.search(r"https://news\.example\.org(/confirm/\S+)", text)
    assert found, text
    return found[1]


def test_subscribe_confirm_and_the_same_answer_for_everyone(
    client: TestClient, project: Project, smtp_server: SMTPServer
) -> None:
    form = client.get("/subscribe")
    assert form.status_code == 200 and 'name="website"' in form.text and 'lang="en"' in form.text
    answer = client.post(
        "/subscribe",
        data={"served": served(client), "email": "Olena@Example.org", "name": "Olena"},
    )
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert status_of(project, "olena@example.org") == "pending"
    (mail,) = smtp_server.received
    assert mail.recipients == ["Olena@Example.org"]
    assert mail.message["To"] == "Olena@Example.org"  # nothing the form's stranger typed
    assert mail.message["Subject"] == "Confirm your subscription to War Notes"

    confirmed = press_confirm(client, client, confirm_link(smtp_server))
    assert confirmed.status_code == 200 and "You are subscribed" in confirmed.text
    assert status_of(project, "olena@example.org") == "active"
    welcome = smtp_server.received[1]  # tests/test_welcome.py says what it holds
    assert welcome.recipients == ["Olena@Example.org"]
    assert welcome.message["Subject"] == "Welcome to War Notes"

    # Active, suppressed and new addresses get the same page; only the new one gets mail.
    with Session(project.engine()) as session:
        subscribers.suppress(session, "blocked@example.org", "manual")
        session.commit()
    pages = {
        email: client.post(
            "/subscribe", data={"served": served(client), "email": email}
        ).text.replace(email, "ADDRESS")
        for email in ("olena@example.org", "blocked@example.org", "new@example.org")
    }
    assert len(set(pages.values())) == 1
    assert [m.recipients for m in smtp_server.received[2:]] == [["new@example.org"]]
    assert status_of(project, "blocked@example.org") is None


def test_honeypot_invalid_address_and_rate_limits(
    client: TestClient, project: Project, smtp_server: SMTPServer
) -> None:
    bot = client.post(
        "/subscribe",
        data={"served": served(client), "email": "bot@example.org", "website": "http://spam"},
    )
    assert bot.status_code == 200 and "Check your inbox" in bot.text
    assert status_of(project, "bot@example.org") is None and smtp_server.received == []
    bad = client.post("/subscribe", data={"served": served(client), "email": "not an address"})
    assert bad.status_code == 400 and 'aria-invalid="true"' in bad.text
    encoded = client.post(
        "/subscribe", data={"served": served(client), "email": "x%0d%0aBcc:all@example.org"}
    )
    assert encoded.status_code == 400
    # List bombing: a third request for one address sends nothing more.
    for _ in range(3):
        assert (
            client.post(
                "/subscribe", data={"served": served(client), "email": "victim@example.org"}
            ).status_code
            == 200
        )
    assert len(smtp_server.received) == 2
    # Per IP: six requests counted so far would be the limit; the seventh gets 429.
    assert (
        client.post(
            "/subscribe", data={"served": served(client), "email": "x@example.org"}
        ).status_code
        == 200
    )
    assert (
        client.post(
            "/subscribe", data={"served": served(client), "email": "y@example.org"}
        ).status_code
        == 429
    )


def test_header_injection_through_the_form_never_reaches_a_header(
    client: TestClient, smtp_server: SMTPServer
) -> None:
    client.post(
        "/subscribe",
        data={
            "served": served(client),
            "email": "eve@example.org",
            "name": "Eve\r\nBcc: all@example.org\r\nX-Evil: 1",
        },
    )
    (mail,) = smtp_server.received
    head = mail.data.split(b"\r\n\r\n", 1)[0].decode()
    assert "Bcc" not in mail.message and "X-Evil" not in mail.message
    assert mail.recipients == ["eve@example.org"]
    assert len([line for line in head.split("\r\n") if line.startswith("To:")]) == 1


def test_unsubscribe_page_changes_nothing_and_one_click_post_unsubscribes(
    client: TestClient, project: Project
) -> None:
    assert project.run("subscribers", "add", "olena@example.org").exit_code == 0
    key = load_key(project.config.signing_key_file)
    with Session(project.engine()) as session:
        person = subscribers.require(session, "olena@example.org")
        assert person.id is not None
        url = signed_url("", key, "unsubscribe", "war-notes", person.token_id)
    page = client.get(url)
    assert page.status_code == 200 and 'value="One-Click"' in page.text
    assert status_of(project, "olena@example.org") == "active"  # a scanner's GET changes nothing

    done = client.post(
        url,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    assert "set-cookie" not in done.headers and "location" not in done.headers
    assert status_of(project, "olena@example.org") == "unsubscribed"
    again = client.post(url, files={"List-Unsubscribe": (None, "One-Click")})  # multipart
    assert again.status_code == 200  # idempotent
    assert status_of(project, "olena@example.org") == "unsubscribed"


def test_bad_tokens_methods_and_bodies(client: TestClient, project: Project) -> None:
    assert project.run("subscribers", "add", "olena@example.org").exit_code == 0
    key = load_key(project.config.signing_key_file)
    with Session(project.engine()) as session:
        token_id = subscribers.require(session, "olena@example.org").token_id
    good = signed_url("", key, "unsubscribe", "war-notes", token_id)
    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    unknown = client.get("/unsubscribe/1.0.nope")
    assert unknown.status_code == 404
    assert client.get(tampered).text == unknown.text  # the same answer, nothing revealed
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    expired = make_token(key, "confirm", "war-notes", token_id, now=long_ago)
    expired_url = f"/confirm/{expired}"
    assert client.post(expired_url, data=confirm_form(client, expired_url)).status_code == 404
    wrong_purpose = make_token(key, "unsubscribe", "war-notes", token_id)
    wrong_url = f"/confirm/{wrong_purpose}"
    assert client.post(wrong_url, data=confirm_form(client, wrong_url)).status_code == 404
    assert client.put(good).status_code == 405
    assert client.delete("/subscribe").status_code == 405
    json_body = client.post(good, json={"List-Unsubscribe": "One-Click"})
    assert json_body.status_code == 400
    other = client.post(good, data={"List-Unsubscribe": "Yes"})
    assert other.status_code == 400
    huge = client.post(
        "/subscribe",
        content=b"email=" + b"a" * 20000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert huge.status_code == 400
    assert status_of(project, "olena@example.org") == "active"
    response = client.get("/subscribe")
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_archive_endpoints(client: TestClient, collected: Project) -> None:
    made = collected.run("issue", "new", "--week", "2022-W51", "--json")
    assert made.exit_code == 0
    path = collected.root / "issues" / "2022-W51.md"
    path.write_text(path.read_text() + "Dear readers.\n")
    assert collected.run("issue", "approve", "2022-W51").exit_code == 0
    index = client.get("/archive/")
    assert index.status_code == 200 and 'href="2022-W51/"' in index.text
    issue = client.get("/archive/2022-W51/")
    assert issue.status_code == 200 and "Front-line diary" in issue.text and "%%" not in issue.text
    assert client.get("/archive/2022-W51", follow_redirects=False).status_code == 308
    assert client.get("/archive/1999-W01/").status_code == 404
    feed = client.get("/archive/feed.xml")
    assert feed.headers["content-type"].startswith("application/rss+xml")
    assert "<link>https://news.example.org/archive/2022-W51/</link>" in feed.text
