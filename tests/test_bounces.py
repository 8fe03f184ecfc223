"""Hearing back: a send with a bounce address, then returned mail of every kind (hard, soft,
forwarded, qmail, block-list 5xx, redacted complaint, out-of-office, mailto unsubscribe,
forgeries) in a Maildir and an mbox, through a pipe; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import mailbox
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from newsletter.audience import subscribers
from newsletter.audience.tokens import load_key
from newsletter.delivery import row_tokens
from newsletter.models import Delivery, FeedbackReport, Subscription, Suppression
from tests import returned
from tests.conftest import Project
from tests.imapserver import PASSWORD, IMAPServer
from tests.sending import AUDIENCE, ledger
from tests.smtpserver import Received


def status_of(project: Project, email: str) -> str:
    with Session(project.engine()) as session:
        person = subscribers.require(session, email)
        found = session.exec(
            select(Subscription.status).where(Subscription.subscriber_id == person.id)
        ).one()
        return str(found)


def suppressed(project: Project) -> dict[str, str]:
    with Session(project.engine()) as session:
        return {s.email or "": s.reason for s in session.exec(select(Suppression)).all()}


def process(project: Project, *args: str) -> tuple[int, list[dict[str, object]]]:
    result = project.run("bounces", "process", "--json", *args)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result.exit_code, lines


def test_every_message_has_its_own_signed_return_path_and_mailto(
    sent: dict[str, Received], ready: Project
) -> None:
    key = load_key(ready.config.signing_key_file)
    senders = set()
    for email, item in sent.items():
        local, _, domain = item.sender.partition("@")
        assert domain == "example.org" and local.startswith("bounces+b-")
        assert len(local) <= 64
        token = row_tokens.read(key, "war-notes", local.removeprefix("bounces+"))
        assert token is not None and token.kind == "b"
        with Session(ready.engine()) as session:
            row = session.get(Delivery, token.delivery_id)
            assert row is not None and row.email == email
        header = str(item.message["List-Unsubscribe"])
        assert header.startswith("<https://news.example.org/unsubscribe/")
        assert "<mailto:bounces+u-" in header and "@example.org?subject=unsubscribe>" in header
        message_id = str(item.message["Message-ID"])
        assert message_id.startswith("<m-") and message_id.endswith("@example.org>")
        senders.add(item.sender)
    assert len(senders) == len(sent)


def returned_mail(sent: dict[str, Received]) -> dict[str, bytes]:
    """One message of each kind, each about a different reader."""
    r = AUDIENCE
    return {
        r[0]: returned.dsn(
            sent[r[0]],
            "5.1.1",
            "550 5.1.1 <x>: Recipient address rejected: User unknown in virtual mailbox table",
        ),
        r[1]: returned.dsn(sent[r[1]], "5.2.2", "552 5.2.2 Mailbox full: quota exceeded"),
        # Forwarded: the reporting server names the address it forwarded to.
        r[2]: returned.dsn(
            sent[r[2]],
            "5.1.1",
            "550 5.1.1 No such user",
            final_recipient="old.name@forwarded.example",
        ),
        r[3]: returned.qmail(sent[r[3]], "Sorry, no mailbox here by that name. (#5.1.1)"),
        r[4]: returned.dsn(
            sent[r[4]],
            "5.7.1",
            "550 5.7.1 Service unavailable; client host "
            "[192.0.2.10] blocked using zen.spamhaus.org",
        ),
        r[5]: returned.complaint(sent[r[5]]),
        r[6]: returned.vacation(sent[r[6]]),
        r[7]: returned.unsubscribe_mail(sent[r[7]]),
        r[8]: returned.forged(r[8]),
        r[9]: returned.forged(r[9], verp=returned.tampered(sent[r[9]].sender)),
        r[10]: returned.dsn(sent[r[10]], "4.4.1", "Connection timed out", action="delayed"),
    }


EXPECTED = {
    # reader: (kind, action, subscription status afterwards)
    0: ("hard", "bounced", "bounced"),
    1: ("soft", "counted", "active"),
    2: ("hard", "bounced", "bounced"),
    3: ("hard", "bounced", "bounced"),
    4: ("soft", "counted", "active"),
    5: ("complaint", "complained", "complained"),
    6: ("auto-reply", "none", "active"),
    7: ("unsubscribe", "unsubscribed", "unsubscribed"),
    8: ("hard", "unverified", "active"),
    9: ("hard", "unverified", "active"),
    10: ("soft", "none", "active"),
}


def test_returned_mail_in_a_maildir_changes_exactly_the_right_people_once(
    sent: dict[str, Received], ready: Project, tmp_path: Path
) -> None:
    mail = returned_mail(sent)
    inbox = tmp_path / "Maildir"
    keys = returned.write_maildir(inbox, list(mail.values()))
    by_key = dict(zip(keys, mail, strict=True))

    # A dry run says what it would do and changes and moves nothing.
    code, lines = process(ready, str(inbox), "--dry-run")
    assert code == 0 and len(lines) == len(mail)
    assert all(status_of(ready, email) == "active" for email in AUDIENCE)
    assert len(os.listdir(inbox / "new")) == len(mail)

    code, lines = process(ready, str(inbox))
    assert code == 0, lines
    assert {tuple(sorted(line)) for line in lines} == {
        ("action", "duplicate", "kind", "recipient", "source", "status")
    }
    for line in lines:
        email = by_key[str(line["source"]).split("/", 1)[1]]
        kind, action, _ = EXPECTED[AUDIENCE.index(email)]
        assert (line["kind"], line["action"]) == (kind, action), (email, line)
    for n, (_, _, status) in EXPECTED.items():
        assert status_of(ready, AUDIENCE[n]) == status, AUDIENCE[n]
    for n in range(11, len(AUDIENCE)):
        assert status_of(ready, AUDIENCE[n]) == "active"
    hidden = suppressed(ready)
    assert {k: v for k, v in hidden.items() if k in AUDIENCE} == {
        AUDIENCE[0]: "bounced",
        AUDIENCE[2]: "bounced",
        AUDIENCE[3]: "bounced",
        AUDIENCE[5]: "complained",
    }
    counts = ledger(ready)
    assert counts["bounced"] == 3 and counts["complained"] == 1
    assert counts["sent"] == len(AUDIENCE) - 4
    # Filed: nothing left in the inbox, everything in .Processed.
    assert os.listdir(inbox / "new") == [] and os.listdir(inbox / "cur") == []
    assert len(os.listdir(inbox / ".Processed" / "cur")) == len(mail)

    # The same mail again (a folder copied back): recognised, nothing changes.
    before = (suppressed(ready), ledger(ready))
    returned.write_maildir(inbox, list(mail.values()))
    code, again = process(ready, str(inbox))
    assert code == 0 and all(line["duplicate"] and line["action"] == "none" for line in again)
    assert (suppressed(ready), ledger(ready)) == before


def test_an_mbox_and_the_pipe_read_the_same_way(
    sent: dict[str, Received], ready: Project, tmp_path: Path
) -> None:
    mail = returned_mail(sent)
    path = tmp_path / "bounces.mbox"
    box = mailbox.mbox(path)
    for data in [mail[AUDIENCE[0]], mail[AUDIENCE[5]]]:
        box.add(data)
    box.flush()
    box.close()
    result = ready.run("bounces", "process", "--json", str(path))
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 0, result.output
    assert [line["action"] for line in lines] == ["bounced", "complained"]
    assert len(mailbox.mbox(path)) == 0
    assert len(mailbox.mbox(tmp_path / "bounces.mbox.processed")) == 2
    assert (tmp_path / "bounces.mbox.processed").stat().st_mode & 0o777 == 0o600

    # The pipe: one message on standard input, as Postfix's pipe transport runs it.
    env = os.environ | {"NEWSLETTER_CONFIG": str(ready.config_file)}
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", "bounces", "process", "-", "--json"],
        input=mail[AUDIENCE[3]],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout)
    assert (line["source"], line["kind"], line["action"]) == ("-", "hard", "bounced")
    assert status_of(ready, AUDIENCE[3]) == "bounced"


def test_mail_nobody_can_read_is_kept_aside_for_a_person(
    sent: dict[str, Received], ready: Project, tmp_path: Path
) -> None:
    inbox = tmp_path / "Maildir"
    spam = b"From: someone@example.net\r\nSubject: Cheap watches\r\n\r\nBuy now.\r\n"
    returned.write_maildir(inbox, [spam, returned_mail(sent)[AUDIENCE[0]]])
    code, lines = process(ready, str(inbox))
    assert code == 1
    assert sorted(line["kind"] for line in lines) == ["hard", "unrecognised"]
    assert len(os.listdir(inbox / ".Unrecognised" / "cur")) == 1
    assert len(os.listdir(inbox / ".Processed" / "cur")) == 1
    listed = json.loads(ready.run("bounces", "list", "--kind", "unrecognised", "--json").stdout)
    assert len(listed) == 1 and listed[0]["action"] == "none"
    shown = ready.run("bounces", "show", str(listed[0]["id"]))
    assert shown.exit_code == 0 and "Cheap watches" in shown.stdout


def test_soft_bounces_on_distinct_issues_make_a_bounce_and_a_clean_delivery_resets(
    sent: dict[str, Received], ready: Project, tmp_path: Path
) -> None:
    """Three issues' soft bounces (the same issue's twice counts once) bounce the reader;
    a reader with a delivery between that did not bounce is counted from it."""
    soft = returned.dsn(sent[AUDIENCE[1]], "5.2.2", "552 5.2.2 Mailbox full")
    with Session(ready.engine()) as session:
        first = session.exec(select(Delivery).where(Delivery.email == AUDIENCE[1])).one()
        clean_first = session.exec(select(Delivery).where(Delivery.email == AUDIENCE[2])).one()
    key = load_key(ready.config.signing_key_file)
    copies = _later_issues(ready, [first, clean_first], 2)
    again = returned.dsn(sent[AUDIENCE[1]], "5.2.2", "552 5.2.2 Mailbox full, second try")
    messages = [soft, again]  # the same issue twice: one report (it means the same)
    for row in copies:
        if row.email == AUDIENCE[1]:
            messages.append(_soft_for(row, key))
    code, lines = process(ready, str(_maildir(tmp_path / "a", messages)))
    assert code == 0
    assert [line["action"] for line in lines] == ["counted", "none", "counted", "bounced"]
    assert lines[1]["duplicate"]
    assert status_of(ready, AUDIENCE[1]) == "bounced"

    # AUDIENCE[2]: soft on issue 1, clean on issue 2, soft on issue 3: still counting.
    rows2 = [row for row in copies if row.email == AUDIENCE[2]]
    mail2 = [
        returned.dsn(sent[AUDIENCE[2]], "5.2.2", "552 5.2.2 Mailbox full"),
        _soft_for(rows2[1], key),
    ]
    code, lines = process(ready, str(_maildir(tmp_path / "b", mail2)))
    assert [line["action"] for line in lines] == ["counted", "counted"]
    assert status_of(ready, AUDIENCE[2]) == "active"


def _maildir(folder: Path, messages: list[bytes]) -> Path:
    returned.write_maildir(folder, messages)
    return folder


def _later_issues(project: Project, rows: list[Delivery], count: int) -> list[Delivery]:
    """Ledger rows of `count` later issues for the same people, sent an hour apart (a copy
    of the approved issue under another slug: the ledger is all the policy reads)."""
    from datetime import timedelta

    from newsletter.models import ApprovedIssue

    made = []
    with Session(project.engine(), expire_on_commit=False) as session:
        issue = session.exec(select(ApprovedIssue)).one()
        for n in range(1, count + 1):
            data = issue.model_dump(exclude={"id"})
            data["slug"] = f"{issue.slug}-later{n}"
            later = ApprovedIssue(**data)
            session.add(later)
            session.flush()
            for row in rows:
                assert row.sent_at is not None
                copy = Delivery(
                    issue_id=later.id,
                    subscriber_id=row.subscriber_id,
                    email=row.email,
                    email_key=row.email_key,
                    state="sent",
                    sent_at=row.sent_at + timedelta(hours=n),
                )
                session.add(copy)
                made.append(copy)
        session.commit()
    return made


def _soft_for(row: Delivery, key: bytes) -> bytes:
    assert row.id is not None
    token = row_tokens.make(key, "b", "war-notes", row.issue_id, row.id)
    verp = row_tokens.address(returned.BOUNCE_MAILBOX, token)
    fake = Received(verp, [row.email], f"To: {row.email}\r\nSubject: x\r\n\r\nx\r\n".encode())
    return returned.dsn(fake, "5.2.2", f"552 5.2.2 Mailbox full (issue {row.issue_id})")


def test_erasure_removes_the_reports_about_a_person(
    sent: dict[str, Received], ready: Project, tmp_path: Path
) -> None:
    process(ready, str(_maildir(tmp_path / "m", [returned_mail(sent)[AUDIENCE[1]]])))
    assert ready.run("subscribers", "remove", AUDIENCE[1]).exit_code == 0
    with Session(ready.engine()) as session:
        left = session.exec(select(FeedbackReport)).all()
        assert left == []
        assert session.execute(sa.text("SELECT count(*) FROM deliveries")).scalar_one() > 0


def test_usage_errors_name_the_source(ready: Project, tmp_path: Path) -> None:
    result = ready.run("bounces", "process", str(tmp_path / "missing"))
    assert result.exit_code == 2 and "does not exist" in result.output
    folder = tmp_path / "plain"
    folder.mkdir()
    result = ready.run("bounces", "process", str(folder))
    assert result.exit_code == 2 and "not a Maildir" in result.output
    result = ready.run("bounces", "process", "imaps://user:secret@mail.example.org/INBOX")
    assert result.exit_code == 2 and "secret" not in result.output
    assert "NEWSLETTER_IMAP_PASSWORD" in result.output


def test_imap_reads_files_and_never_shows_the_password(
    sent: dict[str, Received],
    ready: Project,
    imap_server: IMAPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Against a real Dovecot: the same returned mail, filed in Processed on the server."""
    mail = returned_mail(sent)
    imap_server.append(list(mail.values()))
    monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", "wrong")
    result = ready.run("bounces", "process", imap_server.url)
    assert result.exit_code != 0 and "login refused" in result.output
    assert "wrong" not in result.output
    monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", PASSWORD)
    code, lines = process(ready, imap_server.url, "--dry-run")
    assert code == 0 and imap_server.count("INBOX") == len(mail)
    code, lines = process(ready, imap_server.url)
    assert code == 0 and len(lines) == len(mail)
    actions = sorted(str(line["action"]) for line in lines)
    assert actions == sorted(action for _, action, _ in EXPECTED.values())
    assert imap_server.count("INBOX") == 0 and imap_server.count("Processed") == len(mail)
    assert PASSWORD not in "".join(json.dumps(line) for line in lines)
    for n, (_, _, status) in EXPECTED.items():
        assert status_of(ready, AUDIENCE[n]) == status
    # Read again (moved back by hand), over imaps this time: nothing changes.
    imap_server.append(list(mail.values()))
    code, again = process(ready, imap_server.tls_url)
    assert code == 0 and len(again) == len(mail) and all(line["duplicate"] for line in again)
    assert imap_server.count("INBOX") == 0


def test_imap_refuses_a_server_it_cannot_trust(
    ready: Project, imap_server: IMAPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", PASSWORD)
    monkeypatch.delenv("SSL_CERT_FILE")  # the test CA is no longer trusted
    result = ready.run("bounces", "process", imap_server.tls_url)
    assert result.exit_code != 0 and "certificate" in result.output.lower()
    assert "Traceback" not in result.output and PASSWORD not in result.output


def test_the_person_reopens_a_bounce_but_never_a_complaint(
    sent: dict[str, Received], ready: Project, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    before = datetime.now(UTC) - timedelta(seconds=1)
    mail = returned_mail(sent)
    process(ready, str(_maildir(tmp_path / "m", [mail[AUDIENCE[0]], mail[AUDIENCE[5]]])))
    assert suppressed(ready)[AUDIENCE[0]] == "bounced"
    assert suppressed(ready)[AUDIENCE[5]] == "complained"
    with Session(ready.engine()) as session:
        subscribers.suppress(session, AUDIENCE[12], "manual")
        session.commit()
    later = datetime.now(UTC) + timedelta(seconds=1)
    with Session(ready.engine()) as session:
        bounced = subscribers.require(session, AUDIENCE[0])
        # A confirmation link made before the bounce does not undo it...
        assert not subscribers.confirm(session, bounced, "war-notes", before)
        # ...the person asking again and clicking the new link does.
        assert subscribers.request_subscription(session, "war-notes", AUDIENCE[0], None)
        assert subscribers.confirm(session, bounced, "war-notes", later)
        # A complainer is never mailed from the form, and no link of any age lifts it.
        complainer = subscribers.require(session, AUDIENCE[5])
        assert subscribers.request_subscription(session, "war-notes", AUDIENCE[5], None) is None
        assert not subscribers.confirm(session, complainer, "war-notes", later)
        # The operator's suppression is not the person's to lift.
        assert subscribers.request_subscription(session, "war-notes", AUDIENCE[12], None) is None
        session.commit()
    assert status_of(ready, AUDIENCE[0]) == "active" and AUDIENCE[0] not in suppressed(ready)
    assert status_of(ready, AUDIENCE[5]) == "complained"
    assert suppressed(ready)[AUDIENCE[5]] == "complained"
    assert suppressed(ready)[AUDIENCE[12]] == "manual"


def test_a_maildir_is_read_in_the_order_it_arrived(tmp_path: Path) -> None:
    """Within one second the microseconds decide (M99999 before M100000, which sort the
    other way as text), for Python's, Postfix's and Dovecot's names alike."""
    from newsletter.feedback.mailboxes import Maildir

    arrived = [
        "1699999999.V801I2bM999999.mx.example",
        "1700000000.M99999P9Q1.mx.example",
        "1700000000.M100000P9Q2.mx.example",
        "1700000000.M100001P77.mx.example",
        "1700000001.M5P9Q3.mx.example",
    ]
    for sub in ("cur", "new", "tmp"):
        (tmp_path / sub).mkdir()
    for name in reversed(arrived):
        (tmp_path / "new" / name).write_bytes(b"Subject: x\r\n\r\nx\r\n")
    read = [mail.source for mail in Maildir(tmp_path).messages()]
    assert read == [f"new/{name}" for name in arrived]
