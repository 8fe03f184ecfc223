"""The bounce mailbox belongs to the internet: one message cannot stop a run, and nothing a
reader could have quoted (a counted link's `?r=`, the footer's unsubscribe link, a reply's
In-Reply-To) proves a bounce or a complaint. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from newsletter.audience import subscribers
from newsletter.models import Delivery, FeedbackReport
from tests import returned
from tests.conftest import Project
from tests.sending import AUDIENCE
from tests.smtpserver import Received
from tests.test_bounces import process, status_of, suppressed
from tests.test_clicks import configure


@pytest.fixture
def tracked(ready: Project) -> Project:
    """Per-subscriber tracking on before the send: every counted link carries `?r=`."""
    configure(ready, per_subscriber=True)
    return ready


def maildir(folder: Path, messages: list[bytes]) -> str:
    returned.write_maildir(folder, messages)
    return str(folder)


def links_in(item: Received) -> list[str]:
    html = item.message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return re.findall(r'href="(https://news\.example\.org/[^"]+)"', html)


def test_a_nul_byte_in_a_diagnostic_neither_stops_the_run_nor_loses_its_neighbours(
    sent: dict[str, Received], ready: Project, tmp_path: Path
) -> None:
    """PostgreSQL refuses NUL in text: the report is stored with it replaced, and the valid
    bounces before and after it in the same group act."""
    before = returned.dsn(sent[AUDIENCE[0]], "5.1.1", "550 5.1.1 User unknown")
    nul = returned.dsn(sent[AUDIENCE[1]], "5.1.1", "550 5.1.1 no\x00such user")
    broken = returned.dsn(sent[AUDIENCE[3]], "5.1.1", "550 5.1.1 gone\x00").replace(
        b"Final-Recipient: rfc822; ", b"Final-Recipient: rfc822; \xff\xfe\x00"
    )
    after = returned.dsn(sent[AUDIENCE[2]], "5.1.1", "550 5.1.1 User unknown")
    code, lines = process(ready, maildir(tmp_path / "m", [before, nul, broken, after]))
    assert code in (0, 1), lines
    assert status_of(ready, AUDIENCE[0]) == "bounced"
    assert status_of(ready, AUDIENCE[1]) == "bounced"
    assert status_of(ready, AUDIENCE[2]) == "bounced"
    assert status_of(ready, AUDIENCE[3]) == "bounced"
    with Session(ready.engine()) as session:
        texts = [
            (r.diagnostic or "") + (r.recipient or "") + r.source
            for r in session.exec(select(FeedbackReport)).all()
        ]
    assert len(texts) == 4 and not any("\x00" in text for text in texts)
    # The next run goes on as well: nothing is left to stop it.
    code, again = process(ready, maildir(tmp_path / "m", [after]))
    assert code == 0 and again[0]["duplicate"]


def forged_dsn(recipient: str, quoted: str, *, extra_headers: str = "") -> bytes:
    """A hand-made "user unknown" for a reader, quoting what a reader could share."""
    return f"""Return-Path: <>
Delivered-To: {returned.BOUNCE_MAILBOX}
From: MAILER-DAEMON@evil.example
To: {returned.BOUNCE_MAILBOX}
Subject: Undelivered Mail Returned to Sender
{extra_headers}MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="X"

--X
Content-Type: text/plain

<{recipient}>: 550 5.1.1 user unknown

--- Below this line is a copy of the message.

{quoted}

--X
Content-Type: message/delivery-status

Reporting-MTA: dns; evil.example

Final-Recipient: rfc822; {recipient}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown

--X--
""".replace("\n", "\r\n").encode()


def forged_arf(quoted: str) -> bytes:
    return f"""From: Feedback Loop <fbl@evil.example>
To: {returned.BOUNCE_MAILBOX}
Subject: Complaint
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="F"

--F
Content-Type: text/plain

An abuse report.

--F
Content-Type: message/feedback-report

Feedback-Type: abuse
Version: 1

--F
Content-Type: text/rfc822-headers

Subject: War Notes
X-Quoted: {quoted}

--F--
""".replace("\n", "\r\n").encode()


def test_links_a_reader_shares_and_a_reply_prove_nothing(
    tracked: Project, sent: dict[str, Received], tmp_path: Path
) -> None:
    ready = tracked
    victims = AUDIENCE[:6]
    reader_link = next(link for link in links_in(sent[victims[0]]) if "?r=" in link)
    footer = next(link for link in links_in(sent[victims[1]]) if "/unsubscribe/" in link)
    message_id = str(sent[victims[2]].message["Message-ID"])
    footer_in_header = next(link for link in links_in(sent[victims[4]]) if "/unsubscribe/" in link)
    mark = re.search(r"u-[0-9a-z-]+", footer_in_header)
    assert mark is not None
    forgeries = [
        forged_dsn(victims[0], f"Read it: {reader_link}"),
        forged_dsn(victims[1], f"To unsubscribe: {footer}"),
        # A reply to the issue carries our Message-ID in In-Reply-To and References.
        forged_dsn(
            victims[2],
            "Thanks!",
            extra_headers=f"In-Reply-To: {message_id}\nReferences: {message_id}\n",
        ),
        forged_arf(reader_link.replace("&amp;", "&")),
        # The footer's u- mark written where our envelope sender or Message-ID would be.
        forged_dsn(
            victims[4],
            f"Return-Path: <bounces+{mark.group(0)}@example.org>\n"
            f"Message-ID: <{mark.group(0)}@example.org>\nList-Unsubscribe: <{footer_in_header}>",
        ),
    ]
    code, lines = process(ready, maildir(tmp_path / "f", forgeries))
    assert code == 0, lines
    assert [line["action"] for line in lines] == ["unverified"] * len(forgeries), lines
    for email in victims:
        assert status_of(ready, email) == "active", email
    assert not set(victims) & set(suppressed(ready))


def test_a_report_sent_again_with_a_header_added_does_not_bounce_a_reader_who_came_back(
    sent: dict[str, Received], ready: Project, tmp_path: Path
) -> None:
    email = AUDIENCE[0]
    bounce = returned.dsn(sent[email], "5.1.1", "550 5.1.1 User unknown")
    code, lines = process(ready, maildir(tmp_path / "a", [bounce]))
    assert lines[0]["action"] == "bounced"
    with Session(ready.engine()) as session:  # the person confirms again: they are back
        person = subscribers.require(session, email)
        assert subscribers.request_subscription(session, "war-notes", email, None)
        assert subscribers.confirm(
            session, person, "war-notes", datetime.now(UTC) + timedelta(seconds=1)
        )
        session.commit()
    assert status_of(ready, email) == "active"
    for n, changed in enumerate(
        [
            b"X-Replayed: 1\r\n" + bounce,
            bounce.replace(b"Subject: Undelivered", b"Subject: Re: Undelivered"),
            bounce.replace(b"550 5.1.1 User unknown", b"550 5.1.1 User unknown here"),
        ]
    ):
        code, lines = process(ready, maildir(tmp_path / f"r{n}", [changed]))
        assert code == 0 and lines[0]["duplicate"] and lines[0]["action"] == "none", lines
    assert status_of(ready, email) == "active" and email not in suppressed(ready)


def test_a_bounce_for_mail_sent_long_ago_proves_nothing(
    sent: dict[str, Received], ready: Project, tmp_path: Path
) -> None:
    email = AUDIENCE[3]
    with Session(ready.engine()) as session:
        row = session.exec(select(Delivery).where(Delivery.email == email)).one()
        assert row.sent_at is not None
        row.sent_at = row.sent_at - timedelta(days=31)
        session.add(row)
        session.commit()
    old = returned.dsn(sent[email], "5.1.1", "550 5.1.1 User unknown")
    code, lines = process(ready, maildir(tmp_path / "o", [old]))
    assert code == 0 and lines[0]["action"] == "unverified"
    assert status_of(ready, email) == "active"
    # The same message within the window does act (the token is good; only its age is not).
    fresh = returned.dsn(sent[AUDIENCE[4]], "5.1.1", "550 5.1.1 User unknown")
    code, lines = process(ready, maildir(tmp_path / "n", [fresh]))
    assert lines[0]["action"] == "bounced"


def test_an_outsiders_words_reach_the_terminal_as_text(
    sent: dict[str, Received], ready: Project, tmp_path: Path
) -> None:
    hostile = "550 5.1.1 [link=https://evil.example/x]click[/link] \x1b]0;owned\x07\x1b[2J [bold]x"
    bounce = returned.dsn(sent[AUDIENCE[0]], "5.1.1", hostile)
    spam = (
        b"From: someone@example.net\r\nSubject: \x1b[2J[link=https://evil.example/y]hi\r\n\r\n"
        b"\x1b]0;title\x07 Buy [bold]now[/bold]\r\n"
    )
    result = ready.run("bounces", "process", maildir(tmp_path / "t", [bounce, spam]))
    assert "\x1b" not in result.output and "\x07" not in result.output
    listed = ready.run("bounces", "list")
    assert listed.exit_code == 0
    assert "\x1b" not in listed.stdout and "\x07" not in listed.stdout
    assert "[link=https://evil.example/x]" in listed.stdout.replace("\n", "")
    assert "\\x1b" in listed.stdout
    entries = json.loads(ready.run("bounces", "list", "--json").stdout)
    unrecognised = next(e for e in entries if e["kind"] == "unrecognised")
    shown = ready.run("bounces", "show", str(unrecognised["id"]))
    assert shown.exit_code == 0
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    assert "[link=https://evil.example/y]" in shown.stdout and "[bold]now[/bold]" in shown.stdout
    assert "\\x1b]0;title\\x07" in shown.stdout
