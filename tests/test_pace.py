"""Pace: a day's quota and a new sender's warm-up stop a send cleanly (exit 75, the rest
queued and said so), and `send --due` goes on the next day; over a real SMTP socket."""

from __future__ import annotations

import json
from datetime import date

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from newsletter.delivery.pace import day_quota
from tests.conftest import Project
from tests.sending import AUDIENCE, ledger
from tests.smtpserver import SMTPServer


def _pace(project: Project, lines: str) -> None:
    text = project.config_file.read_text().replace("warmup_factor = 2\n", lines + "\n", 1)
    project.config_file.write_text(text)


def _a_day_passes(project: Project) -> None:
    """Everything sent so far was sent a day earlier."""
    with Session(project.engine()) as session:
        earlier = (
            "sent_at - INTERVAL '1 day'"
            if session.get_bind().dialect.name == "postgresql"
            else "datetime(sent_at, '-1 day')"
        )
        session.execute(
            sa.text(f"UPDATE deliveries SET sent_at = {earlier} WHERE sent_at IS NOT NULL")
        )
        session.commit()


def test_a_days_quota_stops_the_send_and_the_next_day_goes_on(
    ready: Project, smtp_server: SMTPServer
) -> None:
    _pace(ready, "daily_limit = 8\nwarmup_factor = 2")
    assert ready.run("issue", "approve", "2022-W51", "--send-at", "2022-12-26T08:00").exit_code == 0
    first = ready.run("send", "--due", "--json")
    assert first.exit_code == 75, first.output
    (report,) = json.loads(first.stdout)["issues"]
    assert report["sent"] == 8 and "quota" in report["paused"]
    assert ledger(ready) == {"sent": 8, "queued": 12}
    shown = ready.run("deliveries", "show", "2022-W51")
    assert "12 queued: the day's quota is reached" in shown.stdout
    again = ready.run("send", "--due", "--json")  # the same day: nothing more
    assert again.exit_code == 75 and len(smtp_server.received) == 8
    _a_day_passes(ready)
    assert ready.run("send", "--due").exit_code == 75
    assert ledger(ready) == {"sent": 16, "queued": 4}
    _a_day_passes(ready)
    assert ready.run("send", "--due").exit_code == 0
    assert ledger(ready) == {"sent": 20}
    assert sorted(m.recipients[0] for m in smtp_server.received) == sorted(AUDIENCE)


def test_warm_up_ramps_from_the_first_days_count(ready: Project, smtp_server: SMTPServer) -> None:
    _pace(ready, "daily_limit = 100\nwarmup = 5\nwarmup_factor = 2")
    assert ready.run("send", "2022-W51").exit_code == 75
    assert ledger(ready) == {"sent": 5, "queued": 15}
    _a_day_passes(ready)  # the first send was yesterday: today's ramp is 10
    assert ready.run("send", "2022-W51").exit_code == 75
    assert ledger(ready) == {"sent": 15, "queued": 5}
    _a_day_passes(ready)  # the day after: 20, more than is left
    assert ready.run("send", "2022-W51").exit_code == 0
    assert ledger(ready) == {"sent": 20} and len(smtp_server.received) == 20


@pytest.mark.parametrize(
    ("limit", "warmup", "days", "expected"),
    [(None, None, 0, None), (1000, None, 3, 1000), (None, 500, 0, 500), (None, 500, 2, 2000),
     (1500, 500, 2, 1500), (1500, 500, None, 500)],
)  # fmt: skip
def test_the_days_quota(
    project: Project, limit: int | None, warmup: int | None, days: int | None, expected: int | None
) -> None:
    lines = [f"daily_limit = {limit}"] if limit else []
    lines += [f"warmup = {warmup}"] if warmup else []
    _pace(project, "\n".join(lines + ["warmup_factor = 2"]))
    today = date(2026, 12, 4)
    first = None if days is None else date.fromordinal(today.toordinal() - days)
    assert day_quota(project.config, first, today) == expected


def test_a_rate_reply_is_waited_out_and_the_same_reader_sent_in_the_run(
    ready: Project, smtp_server: SMTPServer
) -> None:
    """451 4.7.1 "slow down" was deferred for the retry policy's hours: now the reader goes
    back to the queue and is sent in the same run; never skipped, never failed."""
    smtp_server.handler.data_replies_once[AUDIENCE[3]] = "451 4.7.1 Too many messages, slow down"
    result = ready.run("send", "2022-W51", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["sent"] == len(AUDIENCE) and report["deferred"] == 0
    assert "throttled" in report["waited_for"]
    assert ledger(ready) == {"sent": 20}
    assert sum(m.recipients == [AUDIENCE[3]] for m in smtp_server.received) == 1


def test_two_sends_at_once_share_one_quota(ready: Project, smtp_server: SMTPServer) -> None:
    """The quota is taken in the claim's transaction under a lock: a second sender that
    counts while the first holds its claim waits, then finds the day's quota gone (two
    concurrent sends once handed over 10 with daily_limit = 5)."""
    import threading
    import time
    from datetime import UTC, datetime

    from newsletter.db import Cursor
    from newsletter.delivery import ledger as the_ledger
    from newsletter.delivery.pace import claimable
    from newsletter.models import ApprovedIssue

    _pace(ready, "daily_limit = 5\nwarmup_factor = 2")
    assert ready.run("send", "2022-W51").exit_code == 75  # 5 sent, 15 queued
    _a_day_passes(ready)  # a new day: 5 more may go
    config = ready.config
    engine = ready.engine()
    with Session(engine) as session:
        issue_id = session.execute(sa.select(ApprovedIssue.id)).scalars().one()
    first = engine.connect()
    cursor = Cursor(first)
    allowed = claimable(cursor, config, datetime.now(UTC))
    assert allowed == 5
    rows, _ = the_ledger.claim(cursor, issue_id, config.newsletter_id, 5, "first")
    assert len(rows) == 5
    got: list[int | None] = []

    def second() -> None:
        with engine.connect() as other:
            theirs = Cursor(other)
            got.append(claimable(theirs, config, datetime.now(UTC)))
            theirs.commit()

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.5)
    assert got == []  # it waits for the first's claim to commit
    cursor.commit()
    first.close()
    thread.join(timeout=30)
    assert got == [0]  # the five claimed count: nothing left for a second sender today


def test_newsletters_sending_from_one_domain_share_one_quota(
    ready: Project, smtp_server: SMTPServer
) -> None:
    import dataclasses
    from datetime import UTC, datetime

    from newsletter.delivery.pace import quota_left

    _pace(ready, "daily_limit = 5\nwarmup_factor = 2")
    assert ready.run("send", "2022-W51").exit_code == 75  # war-notes sent its 5 today
    config = ready.config
    other = dataclasses.replace(config, newsletter_id="war-notes-uk")
    with Session(ready.engine()) as session:
        now = datetime.now(UTC)
        assert quota_left(session, other, now) == 5  # a list of its own: its own quota
        shared = dataclasses.replace(other, quota_shared_with=("war-notes",))
        assert quota_left(session, shared, now) == 0  # one domain: one quota
