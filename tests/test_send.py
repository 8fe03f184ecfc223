"""Sending through the ledger against a real SMTP server, with faults injected; on SQLite
and PostgreSQL."""

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from newsletter.audience import subscribers
from newsletter.audience.tokens import load_key, read_token
from newsletter.delivery import row_tokens
from newsletter.models import Delivery
from tests.conftest import Project
from tests.sending import AUDIENCE, ledger, send
from tests.smtpserver import SMTPServer


def test_every_active_subscriber_gets_it_once_with_the_right_headers(
    ready: Project, smtp_server: SMTPServer
) -> None:
    code, report = send(ready)
    assert code == 0 and report["sent"] == 20 and report["finished"] is True
    assert sorted(smtp_server.handler.addresses()) == AUDIENCE
    # Every message's final dot carried the next envelope but each connection's last (3
    # connections; all 20 rows are claimed at once, so a next row is always waiting).
    assert sum(smtp_server.handler.mail_ahead) >= 20 - 3
    key = load_key(ready.config.signing_key_file)
    ids = set()
    for item in smtp_server.received:
        message = item.message
        assert b"\n" not in item.data.replace(b"\r\n", b"")
        assert message["From"] == "War Notes <notes@example.org>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["List-Id"] == "War Notes <war-notes.example.org>"
        # Auto-responders keep quiet (RFC 3834), older ones by Precedence.
        assert message["Auto-Submitted"] == "auto-generated" and message["Precedence"] == "bulk"
        assert message["Message-ID"].endswith("@example.org>")
        ids.add(message["Message-ID"])
        unsubscribe = message["List-Unsubscribe"].strip("<>")
        assert unsubscribe.startswith("https://news.example.org/unsubscribe/")
        path, _, query = unsubscribe.partition("?m=")
        proof = read_token(key, "unsubscribe", "war-notes", path.rsplit("/", 1)[1])
        # ?m= says which message the link came in (the report counts who left after it).
        mark = row_tokens.read(key, "war-notes", query)
        with Session(ready.engine()) as session:
            person = subscribers.require(session, item.recipients[0])
            assert proof is not None and proof.subject == person.token_id
            assert mark is not None and mark.kind == "u"
            row = session.get(Delivery, mark.delivery_id)
            assert row is not None and row.email == item.recipients[0]
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert f"Unsubscribe: {unsubscribe}" in text and unsubscribe in html
        assert "%%" not in text and "%%" not in html
        greeting = "Hello, Reader" if person.name else "Hello, reader,"
        assert greeting in text
    assert len(ids) == 20  # one Message-ID per recipient

    again_code, again = send(ready)
    assert again_code == 0 and again["sent"] == 0 and len(smtp_server.received) == 20


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_5xx_for_one_address_fails_it_suppresses_it_and_the_rest_go(
    ready: Project, smtp_server: SMTPServer, pipelining: bool
) -> None:
    smtp_server.handler.pipelining = pipelining
    smtp_server.handler.refuse["reader03@example.org"] = "550 5.1.1 No such user here"
    code, report = send(ready)
    assert code == 1 and report["failed"] == 1 and report["sent"] == 19
    assert ledger(ready) == {"sent": 19, "failed": 1}
    failed = json.loads(
        ready.run("deliveries", "show", "2022-W51", "--state", "failed", "--json").stdout
    )
    (row,) = failed["rows"]
    assert row["email"] == "reader03@example.org" and row["code"] == 550
    shown = json.loads(ready.run("subscribers", "show", "reader03@example.org", "--json").stdout)
    assert shown["status"] == "bounced"
    assert ready.run("subscribers", "add", "reader03@example.org").exit_code == 1  # suppressed


def test_a_4xx_defers_with_backoff_and_a_later_run_delivers(
    ready: Project, smtp_server: SMTPServer
) -> None:
    smtp_server.handler.refuse["reader05@example.org"] = "451 4.3.0 Try again later"
    code, report = send(ready)
    assert code == 75 and report["deferred"] == 1 and ledger(ready) == {"sent": 19, "deferred": 1}
    with Session(ready.engine()) as session:
        row = session.exec(sa.select(Delivery).where(Delivery.state == "deferred")).scalar_one()
        assert row.next_attempt_at is not None
        wait = row.next_attempt_at - datetime.now(UTC)
        assert timedelta(minutes=3) < wait < timedelta(minutes=7)  # 5 minutes, with jitter
    code, report = send(ready)  # not due yet: nothing is sent, work remains
    assert code == 75 and report["sent"] == 0
    del smtp_server.handler.refuse["reader05@example.org"]
    with Session(ready.engine()) as session:
        session.execute(sa.update(Delivery).values(next_attempt_at=datetime.now(UTC)))
        session.commit()
    code, report = send(ready)
    assert code == 0 and report["sent"] == 1 and report["finished"] is True
    assert smtp_server.handler.addresses().count("reader05@example.org") == 1


def test_a_4xx_past_the_retry_window_fails_and_counts_attempts(
    ready: Project, smtp_server: SMTPServer
) -> None:
    """A row deferred again after `retry_hours` (72 by default) since the send began fails;
    one within the window stays deferred; attempts count every try."""
    smtp_server.handler.refuse["reader05@example.org"] = "451 4.3.0 Try again later"
    smtp_server.handler.refuse["reader06@example.org"] = "452 4.2.2 Mailbox full"
    send(ready)
    with Session(ready.engine()) as session:
        session.execute(
            sa.update(Delivery)
            .where(Delivery.email == "reader05@example.org")
            .values(created_at=datetime.now(UTC) - timedelta(hours=73))
        )
        session.execute(sa.update(Delivery).values(next_attempt_at=datetime.now(UTC)))
        session.commit()
    code, report = send(ready)
    assert code == 75 and ledger(ready) == {"sent": 18, "deferred": 1, "failed": 1}
    with Session(ready.engine()) as session:
        rows = {r.email: r for r in session.exec(sa.select(Delivery)).scalars()}
    failed, deferred = rows["reader05@example.org"], rows["reader06@example.org"]
    assert (failed.state, failed.attempts, failed.last_code) == ("failed", 2, 451)
    assert (deferred.state, deferred.attempts, deferred.last_code) == ("deferred", 2, 452)
    assert deferred.next_attempt_at is not None and deferred.next_attempt_at > datetime.now(UTC)
    assert "Mailbox full" in (deferred.last_error or "")


@pytest.mark.parametrize("pipelining", [True, False])
@pytest.mark.parametrize(
    ("reply", "closes"),
    [
        ("421 4.7.0 Too busy, come back later", False),
        ("421 4.7.0 Too busy, closing", True),
        ("454 4.7.0 Temporary authentication failure", False),
    ],
)
def test_421_and_454_back_off_and_blame_nobody(
    ready: Project, smtp_server: SMTPServer, reply: str, closes: bool, pipelining: bool
) -> None:
    smtp_server.handler.pipelining = pipelining
    smtp_server.handler.close_after_mail_reply = closes
    smtp_server.handler.mail_replies = [reply] * 4
    code, report = send(ready)
    assert code == 0 and report["sent"] == 20 and report["failed"] == 0
    assert sorted(smtp_server.handler.addresses()) == AUDIENCE


def test_a_server_that_is_down_pauses_the_send_and_loses_nothing(
    ready: Project, smtp_server: SMTPServer
) -> None:
    result = ready.run("send", "2022-W51", "--json", "--transport", "smtp://127.0.0.1:9")
    assert result.exit_code == 75
    report = json.loads(result.stdout)
    assert "paused after 10 errors in a row" in report["paused"]
    assert ledger(ready) == {"queued": 20}
    code, report = send(ready)
    assert code == 0 and sorted(smtp_server.handler.addresses()) == AUDIENCE


@pytest.mark.parametrize("pipelining", [True, False])
def test_connection_lost_before_the_dot_defers_and_after_it_is_unknown(
    ready: Project, smtp_server: SMTPServer, pipelining: bool
) -> None:
    smtp_server.handler.pipelining = pipelining
    smtp_server.handler.drop_on_rcpt.add("reader01@example.org")
    smtp_server.handler.drop_after_data.add("reader02@example.org")
    code, report = send(ready)
    assert code == 75
    assert ledger(ready) == {"sent": 18, "deferred": 1, "unknown": 1}
    unknown = json.loads(
        ready.run("deliveries", "show", "2022-W51", "--state", "unknown", "--json").stdout
    )
    assert [row["email"] for row in unknown["rows"]] == ["reader02@example.org"]
    assert smtp_server.handler.addresses().count("reader02@example.org") == 1  # it did arrive
    resolved = ready.run("deliveries", "resolve", "2022-W51", "--mark-sent")
    assert "1 unknown row marked sent" in resolved.stdout
    assert ledger(ready) == {"sent": 19, "deferred": 1}


def test_resolve_resend_sends_unknown_rows_again(ready: Project, smtp_server: SMTPServer) -> None:
    smtp_server.handler.drop_after_data.add("reader02@example.org")
    send(ready)
    smtp_server.handler.drop_after_data.clear()
    assert ready.run("deliveries", "resolve", "2022-W51", "--resend").exit_code == 0
    code, report = send(ready)
    assert code == 0 and report["sent"] == 1
    assert smtp_server.handler.addresses().count("reader02@example.org") == 2  # the one in doubt


def test_unsubscribing_during_a_send_stops_mail_at_once(
    ready: Project, smtp_server: SMTPServer
) -> None:
    from newsletter.delivery import ledger
    from newsletter.delivery.send import find_approved

    with Session(ready.engine()) as session:
        issue = find_approved(session, ready.config, "2022-W51")
        assert ledger.enqueue(session, issue) == 20  # the send has begun...
    assert ready.run("subscribers", "unsubscribe", "reader07@example.org").exit_code == 0
    assert ready.run("subscribers", "remove", "reader08@example.org").exit_code == 0
    code, report = send(ready)
    assert code == 0 and report["skipped"] == 2 and report["sent"] == 18
    assert "reader07@example.org" not in smtp_server.handler.addresses()
    assert "reader08@example.org" not in smtp_server.handler.addresses()


def test_dry_run_test_sends_and_an_edited_issue(ready: Project, smtp_server: SMTPServer) -> None:
    dry = json.loads(ready.run("send", "2022-W51", "--dry-run", "--json").stdout)
    assert sorted(dry["2022-W51"]["recipients"]) == AUDIENCE
    tested = ready.run("send", "2022-W51", "--test-to", "editor@example.org")
    assert tested.exit_code == 0, tested.output
    (item,) = smtp_server.received
    assert item.recipients == ["editor@example.org"]
    assert item.message["Subject"].startswith("[Test] War Notes")
    assert ledger(ready) == {}  # the ledger is untouched
    path = ready.root / "issues" / "2022-W51.md"
    path.write_text(path.read_text() + "One more line.\n")
    edited = ready.run("send", "2022-W51")
    assert edited.exit_code == 2 and "edited after approval" in edited.stderr
    assert len(smtp_server.received) == 1


def test_usage_errors_exit_2(ready: Project) -> None:
    cases = [
        (["send"], "give an issue SLUG, or --due"),
        (["send", "2022-W51", "--rate", "fast"], "bad --rate"),
        (["send", "2022-W51", "--connections", "0"], "--connections 0"),
        (["send", "2022-W51", "--transport", "pigeon://x"], "unknown transport"),
        # A mistyped slug names no file (it said "not approved: run issue approve").
        (["send", "1999-W01"], "no issue 1999-W01: there is no issue file"),
        (["deliveries", "resolve", "2022-W51"], "--resend|--mark-sent"),
    ]
    for args, message in cases:
        result = ready.run(*args)
        assert result.exit_code in (1, 2), (args, result.output)
        assert message in result.stderr, (args, result.stderr)
    assert ready.run("send", "1999-W01").exit_code == 2  # unknown issue: input to fix
    assert ready.run("issue", "new", "--week", "2022-W50", "--slug", "w50").exit_code == 0
    drafted = ready.run("send", "w50")
    assert drafted.exit_code == 2 and "w50 is not approved: run" in drafted.stderr


def test_approval_is_frozen_once_a_send_began(ready: Project, smtp_server: SMTPServer) -> None:
    send(ready)
    again = ready.run("issue", "approve", "2022-W51")
    assert again.exit_code == 2 and "already being sent" in again.stderr


def test_due_sends_what_is_due_and_reports_an_edited_issue(
    ready: Project, smtp_server: SMTPServer
) -> None:
    assert ready.run("issue", "new", "--week", "2022-W50", "--slug", "w50").exit_code == 0
    path50 = ready.root / "issues" / "w50.md"
    path50.write_text(path50.read_text() + "Last week.\n")
    assert ready.run("issue", "approve", "w50", "--send-at", "2022-12-19T08:00").exit_code == 0
    assert ready.run("issue", "approve", "2022-W51", "--send-at", "2022-12-26T08:00").exit_code == 0
    path50.write_text(path50.read_text() + "An edit after approval.\n")
    result = ready.run("send", "--due", "--json")
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert [issue["slug"] for issue in report["issues"]] == ["2022-W51"]
    assert report["issues"][0]["sent"] == 20
    assert (
        report["errors"][0]["slug"] == "w50"
        and "edited after approval" in report["errors"][0]["error"]
    )


def test_rate_caps_the_sending_speed(ready: Project, smtp_server: SMTPServer) -> None:
    """A lower bound only (no flaky upper bound): 20 messages at 10 a second need 1.9 s;
    the same send without --rate takes a fraction of that."""
    code, report = send(ready, "--rate", "10/s")
    assert code == 0 and report["sent"] == 20
    assert report["elapsed"] >= 19 / 10


class Recorder:
    """A Watcher that keeps what it is told, and can act when the first outcome lands."""

    def __init__(self, on_first: Callable[[], None] | None = None) -> None:
        self.totals: list[int | None] = []
        self.done: list[int] = []
        self.reports: list[object] = []
        self.on_first = on_first

    def begin(self, slug: str, total: int | None) -> None:
        self.totals.append(total)

    def advance(self, done: int) -> None:
        if not self.done and self.on_first:
            self.on_first()
        self.done.append(done)

    def end(self, report: object) -> None:
        self.reports.append(report)

    def refused(self, slug: str, error: object) -> None:
        raise AssertionError(error)


def test_an_unsubscribe_mid_send_stops_every_message_not_yet_started(
    ready: Project, smtp_server: SMTPServer
) -> None:
    """All 20 rows are claimed at once (a batch is 32); people who leave after the first
    message went out get nothing, but for the at most two rows the connection had started."""
    from newsletter.delivery.connections import SendOptions
    from newsletter.delivery.send import SendRun
    from newsletter.delivery.transport import open_transport

    smtp_server.handler.delay = 0.02
    leaving = AUDIENCE[5:]

    def unsubscribe_the_rest() -> None:
        with Session(ready.engine()) as session:
            for email in leaving:
                person = subscribers.require(session, email)
                assert person.id is not None
                subscribers.unsubscribe(session, person.id, "war-notes")
            session.commit()

    watcher = Recorder(on_first=unsubscribe_the_rest)
    config = ready.config
    run = SendRun(
        config,
        ready.engine(),
        load_key(config.signing_key_file),
        "2022-W51",
        lambda: open_transport(config.transport, config.root),
        SendOptions(connections=1),
        watcher=watcher,
    )
    report = run.execute()
    received = smtp_server.handler.addresses()
    assert len(set(received) & set(leaving)) <= 2, received
    assert report.skipped >= len(leaving) - 2 and report.sent == 20 - report.skipped
    assert watcher.totals == [20] and watcher.done[-1] == report.sent
    assert report.exit_code == 0 and report.ledger["claimed"] == report.ledger["sending"] == 0


def test_exit_codes_follow_from_the_reports() -> None:
    from newsletter.delivery.send import DueRun, SendReport

    done = {"sent": 3}
    assert SendReport("a", ledger=done).exit_code == 0
    assert SendReport("a", locked=True).exit_code == 0
    assert SendReport("a", ledger=done | {"failed": 1}).exit_code == 1
    assert SendReport("a", ledger=done | {"unknown": 1}).exit_code == 1
    for left in ("queued", "claimed", "sending", "deferred"):
        assert SendReport("a", ledger=done | {left: 1, "failed": 1}).exit_code == 75
    assert SendReport("a", paused="server down", ledger=done).exit_code == 75
    # A worker's rows that peers are still sending are theirs, not work left.
    assert SendReport("a", ledger={"sending": 2}, sending_elsewhere=2).exit_code == 0
    failed, later = SendReport("a", ledger={"failed": 1}), SendReport("b", paused="x")
    assert DueRun("smtp://relay").exit_code == 0
    assert DueRun("t", reports=[failed]).exit_code == 1
    assert DueRun("t", reports=[failed, later]).exit_code == 75
    assert DueRun("t", reports=[failed, later], errors={"c": "edited"}).exit_code == 2


def test_a_send_another_process_holds_says_so_and_exits_0(
    ready: Project, smtp_server: SMTPServer
) -> None:
    from newsletter.delivery.locks import run_lock

    with run_lock(ready.engine(), "send:2022-W51") as mine:
        assert mine
        result = ready.run("send", "2022-W51")
        as_json = ready.run("send", "2022-W51", "--json")
    assert result.exit_code == 0 and "another process is sending it" in result.stdout
    assert json.loads(as_json.stdout)["locked"] is True
    assert smtp_server.received == []


def test_deliveries_slug_still_means_deliveries_show(ready: Project) -> None:
    """The form scripts and crontabs used before `show` and `resolve` existed."""
    assert ready.run("send", "2022-W51").exit_code == 0
    old = ready.run("deliveries", "2022-W51", "--json")
    new = ready.run("deliveries", "show", "2022-W51", "--json")
    assert old.exit_code == 0 and json.loads(old.stdout) == json.loads(new.stdout)
    assert json.loads(old.stdout)["counts"]["bounced"] == 0  # the states heard back, too


def test_a_new_kind_of_mail_is_a_mailing_the_engine_sends_unchanged(
    ready: Project, smtp_server: SMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine (send.py) knows no kind of mail: a kind it has never seen, given as a
    mailing (mailing.py) in mailings.KINDS, goes through `send --due` to every reader once,
    each message a ledger row, its gate asked first."""
    from newsletter.audience.tokens import load_key
    from newsletter.config import Config
    from newsletter.delivery import mailings
    from newsletter.delivery.mailing import approved_template
    from newsletter.delivery.send import DueRun, SendRequest
    from newsletter.delivery.send import send as send_mail
    from newsletter.delivery.transport import open_transport
    from newsletter.editorial.approval import blank_row
    from newsletter.models import ApprovedIssue

    config = ready.config
    with Session(ready.engine()) as session:
        row = blank_row(config.newsletter_id, "notice-2022-12", "notice")
        row.subject, row.html, row.text = "A change to War Notes", "<p>Hello</p>", "Hello"
        session.add(row)
        session.commit()
        row_id = row.id
    gated: list[str] = []

    class Notice:
        kind = "notice"

        def find(self, session: Session, config: Config, slug: str) -> ApprovedIssue | None:
            return session.exec(select(ApprovedIssue).where(ApprovedIssue.slug == slug)).first()

        def gate(self, config: Config, session: Session, row: ApprovedIssue) -> None:
            gated.append(row.slug)

        def prepare(self, config: Config, session: Session, row: ApprovedIssue) -> str:
            return config.archive_url()

        def template(self, config: Config, engine: object, key: bytes, row: ApprovedIssue):  # type: ignore[no-untyped-def]
            return approved_template(config, row)

        def due(self, config: Config, session: Session) -> list[str]:
            found = session.exec(select(ApprovedIssue).where(ApprovedIssue.kind == "notice"))
            return [r.slug for r in found if r.finished_at is None]

    monkeypatch.setitem(mailings.KINDS, "notice", Notice())
    result = send_mail(
        config,
        ready.engine(),
        load_key(config.signing_key_file),
        lambda: open_transport(config.transport, config.root),
        SendRequest(due=True),
    )
    assert isinstance(result, DueRun) and result.exit_code == 0, result.as_dict()
    assert gated == ["notice-2022-12"]
    notices = [m for m in smtp_server.received if m.message["Subject"] == "A change to War Notes"]
    assert sorted(r for m in notices for r in m.recipients) == sorted(AUDIENCE)
    with Session(ready.engine()) as session:
        sent = session.exec(select(Delivery).where(Delivery.state == "sent")).all()
        assert len([d for d in sent if d.issue_id == row_id]) == len(AUDIENCE)
