"""The bounce mailbox belongs to the internet: one message cannot stop a run, and nothing a
reader could have quoted (a counted link's `?r=`, the footer's unsubscribe link, a reply's
In-Reply-To) proves a bounce or a complaint. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
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
    return returned.forged(recipient, quoted=quoted, extra_headers=extra_headers)


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


def test_entries_in_a_maildir_that_are_not_mail_are_set_aside_and_the_run_finishes(
    sent: dict[str, Received], ready: Project, tmp_path: Path
) -> None:
    """A link to the key file, a symlink loop, a FIFO, a folder and a 253-character name in
    new/: nothing follows a link or blocks, each is set aside with a reason, the real
    bounces around them act. In a subprocess: the old reader blocked forever on the FIFO."""
    inbox = tmp_path / "Maildir"
    good = returned.dsn(sent[AUDIENCE[0]], "5.1.1", "550 5.1.1 User unknown")
    long_one = returned.dsn(sent[AUDIENCE[1]], "5.1.1", "550 5.1.1 User unknown")
    returned.write_maildir(inbox, [good])
    new = inbox / "new"
    key_file = ready.config.signing_key_file
    (new / "1700000000.M1P1.link").symlink_to(key_file)
    (new / "1700000000.M2P1.loop").symlink_to(new / "1700000000.M3P1.loop")
    (new / "1700000000.M3P1.loop").symlink_to(new / "1700000000.M2P1.loop")
    os.mkfifo(new / "1700000000.M4P1.fifo")
    (new / "1700000000.M5P1.folder").mkdir()
    long_name = "1700000000.M6P1." + "x" * 237
    assert len(long_name) == 253
    (new / long_name).write_bytes(long_one)
    env = os.environ | {"NEWSLETTER_CONFIG": str(ready.config_file)}
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", "bounces", "process", "--json", str(inbox)],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr  # some entries could not be read
    assert "Traceback" not in done.stderr.decode()
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 7
    actions = sorted(line["action"] for line in lines)
    assert actions == ["bounced", "bounced", "none", "none", "none", "none", "none"]
    warnings = done.stderr.decode()
    assert "symbolic link" in warnings and "not a regular file" in warnings
    assert status_of(ready, AUDIENCE[0]) == "bounced" and status_of(ready, AUDIENCE[1]) == "bounced"
    assert os.listdir(new) == []
    assert key_file.is_file()  # the link moved, not what it pointed to
    secret = key_file.read_bytes()
    with Session(ready.engine()) as session:
        kept = [r.raw or b"" for r in session.exec(select(FeedbackReport)).all()]
    assert not any(secret in raw or secret.hex().encode() in raw for raw in kept)


def _max_rss_kb(args: list[str], env: dict[str, str]) -> tuple[int, int]:
    process_ = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process_.pid, 0)
    process_.returncode = os.waitstatus_to_exitcode(status)
    return process_.returncode, usage.ru_maxrss


def test_a_huge_message_in_an_mbox_is_streamed_past(
    sent: dict[str, Received], ready: Project, tmp_path: Path
) -> None:
    """A 60 MB message of one line between two bounces: memory stays within the cap (it
    grew by several times the message before), the bounces act, the giant is set aside
    and moved whole."""
    env = os.environ | {"NEWSLETTER_CONFIG": str(ready.config_file)}
    command = [sys.executable, "-m", "newsletter", "bounces", "process"]
    small = tmp_path / "small.mbox"
    small.write_bytes(b"From x@example.net Mon Dec 26 09:00:00 2022\nSubject: hi\n\nhello\n")
    code, baseline = _max_rss_kb([*command, str(small)], env)
    assert code == 1
    giant = tmp_path / "giant.mbox"
    first = returned.dsn(sent[AUDIENCE[0]], "5.1.1", "550 5.1.1 User unknown")
    last = returned.dsn(sent[AUDIENCE[1]], "5.1.1", "550 5.1.1 User unknown")
    with giant.open("wb") as handle:
        for body in (first, None, last):
            handle.write(b"From MAILER-DAEMON Mon Dec 26 09:00:00 2022\n")
            if body is None:
                handle.write(b"Subject: big\n\n")
                for _ in range(60):
                    handle.write(b"A" * 1_000_000)
                handle.write(b"\n\n")
            else:
                handle.write(body.replace(b"\r\n", b"\n") + b"\n")
    size = giant.stat().st_size
    code, peak = _max_rss_kb([*command, str(giant)], env)
    assert code == 1
    # KB: 1 MB more here; the old reader held the message several times (45 MB more).
    assert peak - baseline < 25_000, (baseline, peak)
    assert status_of(ready, AUDIENCE[0]) == "bounced" and status_of(ready, AUDIENCE[1]) == "bounced"
    assert giant.stat().st_size == 0
    moved = giant.with_name("giant.mbox.unrecognised")
    assert moved.stat().st_size >= size - 3 * len(first)
    assert (moved.stat().st_mode & 0o777) == 0o600


class ScriptedIMAP:
    """An IMAP server on 127.0.0.1 that answers a login and a search, then misbehaves:
    `drip` sends its greeting a byte at a time; `literal` announces a body of 10^12 bytes
    and sends a megabyte of it."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        connection.settimeout(1)
        with connection:
            if self.mode == "drip":
                for byte in b"* OK IMAP4rev1 " + b"x" * 10_000:
                    if self.stop.wait(0.2):
                        return
                    connection.sendall(bytes([byte]))
                return
            connection.sendall(b"* OK IMAP4rev1 ready\r\n")
            reader = connection.makefile("rb")
            while not self.stop.is_set():
                try:
                    line = reader.readline()
                except OSError:
                    continue
                if not line:
                    return
                tag, _, command = line.decode().strip().partition(" ")
                upper = command.upper()
                if upper.startswith("CAPABILITY"):
                    answer = "* CAPABILITY IMAP4rev1\r\n"
                elif upper.startswith("SELECT"):
                    answer = "* 1 EXISTS\r\n"
                elif upper.startswith("UID SEARCH"):
                    answer = "* SEARCH 1\r\n"
                elif "RFC822.SIZE" in upper:
                    answer = "* 1 FETCH (UID 1 RFC822.SIZE 900)\r\n"
                elif "BODY.PEEK" in upper:
                    connection.sendall(b"* 1 FETCH (UID 1 BODY[] {1000000000000}\r\n")
                    connection.sendall(b"B" * 1_000_000)
                    return
                else:
                    answer = ""
                connection.sendall(f"{answer}{tag} OK done\r\n".encode())

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.mark.parametrize("mode", ["drip", "literal"])
def test_a_hostile_imap_server_neither_holds_the_run_nor_sizes_its_memory(
    ready: Project, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    from newsletter.feedback import mailboxes

    monkeypatch.setattr(mailboxes, "IMAP_DEADLINE", 2.0)
    monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", "secret")
    server = ScriptedIMAP(mode)
    results: list[object] = []
    started = time.monotonic()
    worker = threading.Thread(
        target=lambda: results.append(
            ready.run("bounces", "process", f"imap://bounces@127.0.0.1:{server.port}/INBOX")
        ),
        daemon=True,
    )
    worker.start()
    worker.join(30)
    server.close()
    assert not worker.is_alive(), "the run is still waiting on the server"
    assert time.monotonic() - started < 15
    result = results[0]
    assert result.exit_code in (1, 2), result.output  # type: ignore[attr-defined]
    assert result.exception is None or isinstance(result.exception, SystemExit)  # type: ignore[attr-defined]
    lines = [line for line in result.output.splitlines() if line.strip()]  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines


def test_a_fetched_page_with_nul_in_its_json_ld_is_stored_on_both_databases(
    project: Project, tmp_path: Path
) -> None:
    """The same class of input as a bounce's NUL: a page (from a site anyone can run) whose
    JSON-LD carries \\u0000 in its headline and byline was lost on PostgreSQL."""
    page = tmp_path / "page.html"
    page.write_text(
        '<!doctype html><html><head><title>T</title><link rel="canonical" '
        'href="https://example.org/nul-article/"><script type="application/ld+json">'
        '{"@type":"NewsArticle","headline":"Bad\\u0000title","author":{"@type":"Person",'
        '"name":"Asami\\u0000 Terajima"},"datePublished":"2022-12-20T10:00:00+02:00",'
        '"description":"x\\u0000y"}</script></head><body><article><p>Text.</p></article>'
        "</body></html>"
    )
    result = project.run("collect", "--page", str(page))
    assert result.exit_code == 0, result.output
    listed = json.loads(project.run("articles", "list", "--week", "2022-W51", "--json").stdout)
    assert [a["title"] for a in listed] == ["Badtitle"]


def test_a_file_that_is_not_an_mbox_is_named_and_left_unlocked(
    project: Project, tmp_path: Path
) -> None:
    """One message saved as a file (no `From ` line) was a ValueError from inside the
    bounded table of contents, and left its dot lock behind."""
    path = tmp_path / "saved.eml"
    path.write_bytes(b"Subject: a bounce saved from a mail client\r\n\r\nbody\r\n")
    for _ in range(2):  # the second run finds no lock left by the first
        result = project.run("bounces", "process", str(path))
        assert result.exit_code == 2, result.output
        assert "not an mbox file" in result.stderr and "process - <" in result.stderr
    assert not (tmp_path / "saved.eml.lock").exists()
    empty = tmp_path / "empty.mbox"
    empty.write_bytes(b"")
    assert project.run("bounces", "process", str(empty)).exit_code == 0
