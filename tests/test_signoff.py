"""Sign-off from a phone: a request mails each approver a real test copy with a link; a GET
(a scanner, curl, a preview bot) changes nothing; the approver's click in Chromium approves
exactly what was asked about; `send --due` sends it at its time; the history names who did
what; an edit after the request voids the link; tampered, expired and used links are one
404; on both databases, over a real SMTP socket."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Route
from sqlmodel import Session, select

from newsletter.editorial import approval
from newsletter.editorial.checks import Finding
from newsletter.models import Approval, ApprovedIssue
from newsletter.web.server import redact
from tests.conftest import Project
from tests.forms import approval_fields
from tests.liveweb import start
from tests.sending import AUDIENCE, site_client
from tests.smtpserver import Received, SMTPServer

OLHA = "Olha Koval <olha@example.org>"
IVAN = "Ivan Petrenko <ivan@example.org>"
ASAMI = "Asami Terajima <asami@example.org>"
SCANNER = "Mozilla/5.0 (compatible; Mimecast URL Protect)"


def _configure(project: Project, **keys: str) -> None:
    """Approvers (and any other [newsletter] keys) in the project's config."""
    lines = [f'approvers = ["{OLHA}", "{IVAN}"]'] + [f"{k} = {v}" for k, v in keys.items()]
    text = project.config_file.read_text()
    for key in keys:  # the starter file sets these to their defaults
        text = re.sub(rf"^{key} = .*\n", "", text, flags=re.M)
    text = text.replace("approval_hours = 72\n", "approval_hours = 72\n" + "\n".join(lines) + "\n")
    project.config_file.write_text(text)


def _link(mail: Received) -> str:
    text = mail.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    found = re.search(r"(https?://\S+/approve/[A-Za-z0-9._-]+)", text)
    assert found, text
    return found[1]


def _request(project: Project, *args: str) -> None:
    result = project.run("issue", "request-approval", "2022-W51", "--as", ASAMI, *args)
    assert result.exit_code == 0, result.output


def _frozen(project: Project) -> ApprovedIssue | None:
    with Session(project.engine()) as session:
        return session.exec(select(ApprovedIssue).where(ApprovedIssue.slug == "2022-W51")).first()


def _history(project: Project) -> dict[str, object]:
    result = project.run("issue", "history", "2022-W51", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _no_images(route: Route) -> None:
    if route.request.resource_type == "image":
        route.abort()
    else:
        route.continue_()


@pytest.fixture
def client(drafted: Project, smtp_server: SMTPServer) -> Iterator[TestClient]:
    _configure(drafted, require_approval="true")
    with site_client(drafted, smtp_server) as test_client:
        yield test_client


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_whole_flow_from_a_phone_in_chromium(
    drafted: Project, smtp_server: SMTPServer, browser: Browser
) -> None:
    _configure(drafted, require_approval="true")
    text = drafted.config_file.read_text().replace(
        "[bounces]", f'test_recipients = ["{ASAMI}"]\n\n[bounces]', 1
    )
    drafted.config_file.write_text(text)
    # The server keeps the config's https base_url (the CLI's renders must match its own),
    # and is reached on its port.
    served = start(drafted, smtp_server, None, keep_base_url=True)
    live = next(served)
    try:
        send_at = datetime.now(UTC) + timedelta(seconds=25)
        _request(drafted, "--to", OLHA, "--send-at", send_at.isoformat(timespec="seconds"))
        to_olha = [m for m in smtp_server.received if m.recipients == ["olha@example.org"]]
        (mail,) = to_olha
        assert mail.message["Subject"].startswith("[Approval] War Notes:")
        html = mail.message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert "Approve for sending on" in html and "Kyiv time" in html
        assert "Bakhmut defenders hold the line" in html  # the real issue below the banner
        seeds = [m for m in smtp_server.received if m.recipients == ["asami@example.org"]]
        assert len(seeds) == 1 and seeds[0].message["Subject"].startswith("[Test]")
        link = _link(mail).replace("https://news.example.org", live.base)

        # Not approved yet: `send` refuses with the fix.
        refused = drafted.run("send", "2022-W51")
        assert refused.exit_code == 2 and "request-approval" in refused.stderr

        # A security gateway, curl and a preview bot open the link: nothing changes.
        for agent in (SCANNER, "curl/8.5.0", "Slackbot-LinkExpanding 1.0"):
            seen = httpx.get(link, headers={"User-Agent": agent}, timeout=10)
            assert seen.status_code == 200 and "Approve" in seen.text
        # A POST without the page's cookie (a forwarded copy scraped by a bot) is refused.
        form = re.search(r'name="form" value="([^"]+)"', seen.text)
        assert form is not None
        bot = httpx.post(link, data={"form": form[1], "action": "approve"}, timeout=10)
        assert bot.status_code == 403
        assert _frozen(drafted) is None

        # The page passes axe at phone and desktop widths, light and dark (a GET: nothing
        # changes), and works with images blocked.
        from tests.test_accessibility import violations

        found = [
            problem
            for scheme in ("light", "dark")
            for width in (375, 600)
            for problem in violations(browser, link, scheme, width)
        ]
        assert found == []
        blocked = browser.new_context(viewport={"width": 375, "height": 800})
        blocked.route("**/*", lambda route: _no_images(route))
        shown = blocked.new_page()
        shown.goto(link)
        assert shown.get_by_role("button", name="Approve").is_visible()
        assert shown.get_by_role("button", name="Request changes").is_visible()
        assert shown.evaluate("document.documentElement.scrollWidth") <= 375
        blocked.close()
        assert _frozen(drafted) is None

        page = browser.new_page(viewport={"width": 375, "height": 800})
        page.goto(link)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        assert "Asked by Asami Terajima" in page.inner_text("body")
        page.screenshot(path=str(drafted.root / "approve-375.png"), full_page=True)
        page.wait_for_timeout(2100)  # a person reads before approving (web/human.py)
        page.get_by_role("button", name="Approve").click()
        page.wait_for_load_state()
        assert page.locator("h1").inner_text() == "Approved", page.inner_text("body")[:500]
        page.close()
        # The link acted once: a second open is the 404 every bad link gets.
        assert httpx.get(link, timeout=10).status_code == 404
    finally:
        next(served, None)

    frozen = _frozen(drafted)
    assert frozen is not None and frozen.approved_by == OLHA
    assert frozen.send_at is not None
    trail = _history(drafted)
    (event,) = trail["events"]  # type: ignore[misc]
    assert event["requested_by"] == ASAMI and event["approver"] == OLHA
    assert event["decision"] == "approved" and event["client_address"] == "127.0.0.1"
    assert event["content_hash"] == frozen.content_hash
    before = len(smtp_server.received)
    assert drafted.run("send", "--due").stdout.strip() == "Nothing due."  # not yet
    time.sleep(max(0.0, (send_at - datetime.now(UTC)).total_seconds()) + 0.5)
    sent = drafted.run("send", "--due")
    assert sent.exit_code == 0, sent.output
    assert sorted(m.recipients[0] for m in smtp_server.received[before:]) == sorted(AUDIENCE)
    assert _history(drafted)["approved"]["sent_by"]  # type: ignore[index]
    shown = drafted.run("issue", "history", "2022-W51")
    assert "Olha Koval <olha@example.org> approved from 127.0.0.1" in shown.stdout


def test_an_edit_or_a_move_after_the_request_voids_the_link(
    client: TestClient, drafted: Project, smtp_server: SMTPServer
) -> None:
    _request(drafted, "--to", OLHA)
    link = _link(smtp_server.received[-1]).removeprefix("https://news.example.org")
    path = drafted.root / "issues" / "2022-W51.md"
    path.write_text(path.read_text() + "One more line after the request.\n")
    page = client.get(link)
    assert page.status_code == 200 and "This issue changed" in page.text
    assert 'name="action"' not in page.text  # nothing to approve
    assert client.post(link, data={"form": "x", "action": "approve"}).status_code == 403
    # Asked again, then an article moved: that link is void too.
    _request(drafted, "--to", OLHA)
    again = _link(smtp_server.received[-1]).removeprefix("https://news.example.org")
    fields = approval_fields(client, client.get(again).text, again)
    moved = drafted.run(
        "issue", "move", "2022-W51", "https://kyivindependent.com/energy-grid-repairs/", "--to", "1"
    )
    assert moved.exit_code == 0, moved.output
    late = client.post(again, data=fields | {"action": "approve"})
    assert late.status_code == 200 and "This issue changed" in late.text
    assert _frozen(drafted) is None
    assert all(e["decision"] is None for e in _history(drafted)["events"])  # type: ignore[union-attr]


def test_bad_links_are_one_404_and_none_reaches_a_log(
    client: TestClient, drafted: Project, smtp_server: SMTPServer
) -> None:
    _request(drafted, "--to", OLHA)
    link = _link(smtp_server.received[0]).removeprefix("https://news.example.org")
    ident, expiry, mac = link.removeprefix("/approve/").split(".")
    other = client.get("/approve/nonsense")
    assert other.status_code == 404
    tampered = [
        f"/approve/{ident}.{expiry}.{mac[:-2]}xx",
        f"/approve/{ident}.{int(expiry) + 1000}.{mac}",  # a longer life, unsigned
        f"/approve/{int(ident, 36) + 1:x}.{expiry}.{mac}",
    ]
    for bad in tampered:
        answer = client.get(bad)
        assert answer.status_code == 404 and answer.text == other.text
    # Expired: the row's time has passed.
    with Session(drafted.engine()) as session:
        row = session.exec(select(Approval)).one()
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        session.add(row)
        session.commit()
        new_expiry = int(row.expires_at.timestamp() * 1000)
    assert client.get(link).status_code == 404
    assert client.get(f"/approve/{ident}.{new_expiry}.{mac}").status_code == 404
    assert redact(f"GET {link} HTTP/1.1") == "GET /approve/[token] HTTP/1.1"


def test_request_changes_mails_the_requester_and_approves_nothing(
    client: TestClient, drafted: Project, smtp_server: SMTPServer
) -> None:
    _request(drafted, "--to", IVAN)
    link = _link(smtp_server.received[0]).removeprefix("https://news.example.org")
    page = client.get(link)
    fields = approval_fields(client, page.text, link)
    comment = "The Patriot piece needs its correction note."
    answer = client.post(link, data=fields | {"action": "changes", "comment": comment})
    assert answer.status_code == 200 and "asami@example.org" in answer.text
    mailed = smtp_server.received[-1]
    assert mailed.recipients == ["asami@example.org"]
    body = mailed.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert comment in body and "Ivan Petrenko" in body
    assert _frozen(drafted) is None
    (event,) = _history(drafted)["events"]  # type: ignore[misc]
    assert event["decision"] == "changes" and event["comment"] == comment
    assert client.get(link).status_code == 404  # used


def test_two_approvers_neither_the_requester(drafted: Project, smtp_server: SMTPServer) -> None:
    _configure(drafted, require_approval="true", approvals_needed="2")
    # Olha asks; her own approval does not count towards the two.
    result = drafted.run("issue", "request-approval", "2022-W51", "--as", OLHA)
    assert result.exit_code == 0, result.output
    links = {m.recipients[0]: _link(m) for m in smtp_server.received}
    with site_client(drafted, smtp_server) as client:
        for who, expected in (("olha@example.org", "One more"), ("ivan@example.org", "One more")):
            path = links[who].removeprefix("https://news.example.org")
            fields = approval_fields(client, client.get(path).text, path)
            answer = client.post(path, data=fields | {"action": "approve"})
            assert expected in answer.text, answer.text
    assert _frozen(drafted) is None
    # Nothing was frozen: there is nothing to send.
    assert drafted.run("send", "2022-W51").exit_code == 2


def test_cli_approval_is_in_the_trail_but_is_no_sign_off(
    drafted: Project, smtp_server: SMTPServer
) -> None:
    _configure(drafted, require_approval="true")
    approved = drafted.run("issue", "approve", "2022-W51", "--as", OLHA)
    assert approved.exit_code == 0, approved.output
    assert "require_approval" in approved.stderr
    (event,) = _history(drafted)["events"]  # type: ignore[misc]
    assert event["channel"] == "cli" and event["approver"] == OLHA
    refused = drafted.run("send", "2022-W51")
    assert refused.exit_code == 2 and "request-approval" in refused.stderr
    assert smtp_server.received == []
    # Without require_approval, the CLI's approval sends as it always did.
    text = drafted.config_file.read_text().replace("require_approval = true", "")
    drafted.config_file.write_text(text)
    assert drafted.run("send", "2022-W51").exit_code == 0
    assert len(smtp_server.received) == len(AUDIENCE)


def test_a_request_names_its_mistakes(drafted: Project) -> None:
    none = drafted.run("issue", "request-approval", "2022-W51")
    assert none.exit_code == 2 and "[newsletter] approvers" in none.stderr
    _configure(drafted)
    stranger = drafted.run("issue", "request-approval", "2022-W51", "--to", "x@example.org")
    assert stranger.exit_code == 2 and "not one of [newsletter] approvers" in stranger.stderr
    bad = drafted.config_file.read_text().replace(OLHA, "Olha <not an address>")
    drafted.config_file.write_text(bad)
    broken = drafted.run("issue", "request-approval", "2022-W51")
    assert broken.exit_code == 2 and "approvers" in broken.stderr


def test_a_bot_that_keeps_cookies_approves_nothing(
    client: TestClient, drafted: Project, smtp_server: SMTPServer
) -> None:
    """It fetches the page (the cookie kept) and posts the form as fetched: without the
    value the page's script writes, or at once, the POST is refused."""
    _request(drafted, "--to", OLHA)
    link = _link(smtp_server.received[-1]).removeprefix("https://news.example.org")
    page = client.get(link).text
    form = re.search(r'name="form" value="([^"]+)"', page)
    stamp = re.search(r'name="served" value="([^"]+)"', page)
    value = re.search(r'data-value="([^"]+)"', page)
    assert form and stamp and value
    as_fetched = {"form": form[1], "served": stamp[1], "human": "", "action": "approve"}
    assert client.post(link, data=as_fetched).status_code == 403
    at_once = as_fetched | {"human": value[1]}  # a crawler that runs the script, no pause
    assert client.post(link, data=at_once).status_code == 403
    assert _frozen(drafted) is None
    # The page allows its one script by hash, and no other.
    policy = client.get(link).headers["content-security-policy"]
    assert "script-src 'sha256-" in policy and "unsafe-inline'" not in policy.split("script")[1]
    assert (
        client.post(
            link, data=approval_fields(client, page, link) | {"action": "approve"}
        ).status_code
        == 200
    )
    assert _frozen(drafted) is not None


def test_approval_tokens_have_one_spelling(
    client: TestClient, drafted: Project, smtp_server: SMTPServer
) -> None:
    _request(drafted, "--to", OLHA)
    link = _link(smtp_server.received[-1]).removeprefix("https://news.example.org")
    ident, expiry, mac = link.removeprefix("/approve/").split(".")
    arabic = expiry.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    nobody = client.get("/approve/nonsense")
    for spelling in (
        f"0{ident}.{expiry}.{mac}",
        f"+{ident}.{expiry}.{mac}",
        f"{ident.upper()}.{expiry}.{mac}" if ident.upper() != ident else f"0{ident}.{expiry}.{mac}",
        f"{ident}.0{expiry}.{mac}",
        f"{ident}.+{expiry}.{mac}",
        f"{ident}.{arabic}.{mac}",
        f"{ident}.{expiry[:3]}_{expiry[3:]}.{mac}",
    ):
        answer = client.get(f"/approve/{spelling}")
        assert answer.status_code == 404 and answer.text == nobody.text, spelling
    assert client.get(link).status_code == 200


def test_two_approval_tabs_each_keep_their_own_form(
    client: TestClient, drafted: Project, smtp_server: SMTPServer
) -> None:
    """Two links open in one browser (one cookie jar): the second page's cookie does not
    replace the first's, so the first tab still approves."""
    _request(drafted, "--to", OLHA)
    first = _link(smtp_server.received[-1]).removeprefix("https://news.example.org")
    _request(drafted, "--to", IVAN)
    second = _link(smtp_server.received[-1]).removeprefix("https://news.example.org")
    page = client.get(first).text
    assert client.get(second).status_code == 200
    answer = client.post(first, data=approval_fields(client, page, first) | {"action": "approve"})
    assert answer.status_code == 200 and "Request refused" not in answer.text


def test_an_approvers_control_characters_reach_no_mail_and_no_json(
    client: TestClient, drafted: Project, smtp_server: SMTPServer
) -> None:
    _request(drafted, "--to", IVAN)
    link = _link(smtp_server.received[0]).removeprefix("https://news.example.org")
    page = client.get(link)
    hostile = "Fix\x1b[2J the\x07 lead\u202e\x7f\x9b\u061c please"
    fields = approval_fields(client, page.text, link)
    answer = client.post(link, data=fields | {"action": "changes", "comment": hostile})
    assert answer.status_code == 200
    body = smtp_server.received[-1].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "the lead" in body and "please" in body  # the words stay, the controls go
    for bad in ("\x1b", "\x07", "\u202e", "\x7f", "\x9b", "\u061c"):
        assert bad not in body
    result = drafted.run("issue", "history", "2022-W51", "--json")
    assert result.exit_code == 0
    json.loads(result.stdout)  # still JSON


def test_print_json_escapes_what_a_terminal_would_act_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from newsletter.cli.output import print_json

    print_json({"words": "a\x7fb\x9bc\u202ed\x1be\x00"})
    printed = capsys.readouterr().out
    assert json.loads(printed) == {"words": "a\x7fb\x9bc\u202ed\x1be\x00"}
    assert all(c not in printed for c in "\x7f\x9b\u202e\x1b\x00")


def test_a_check_that_fails_at_the_approvers_click_approves_nothing_and_says_so(
    client: TestClient, drafted: Project, smtp_server: SMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The freeze checks again (a link checker's answer can change between request and
    # click); its failure was a 500 page with the decision half made.
    _request(drafted, "--to", OLHA)
    link = _link(smtp_server.received[-1]).removeprefix("https://news.example.org")
    fields = approval_fields(client, client.get(link).text, link)
    broken = [Finding("error", "link", "link https://example.org/gone answered 404")]
    monkeypatch.setattr(approval, "check_rendered", lambda *args: broken)
    answer = client.post(link, data=fields | {"action": "approve"})
    assert answer.status_code == 409 and "fails a check" in answer.text
    assert _frozen(drafted) is None
    assert all(e["decision"] is None for e in _history(drafted)["events"])  # type: ignore[union-attr]
