"""Several `send --worker` senders sharing one PostgreSQL ledger: real processes, a real
SMTP server, and a peer that dies mid-send."""

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from functools import partial

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from newsletter.delivery import ledger
from newsletter.delivery.locks import run_lock, sender_alive, sender_identity
from newsletter.delivery.send import find_approved
from newsletter.models import Delivery
from tests.conftest import Project
from tests.smtpserver import SMTPServer
from tests.test_crash import COUNT, prepare, sent_count, spawn, unknown_rows

postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@postgresql_only
def test_two_workers_share_the_issue_and_send_each_message_once(
    collected: Project, smtp_server: SMTPServer
) -> None:
    audience = prepare(collected, smtp_server, send_at="2022-12-26T08:00")
    smtp_server.handler.delay = 0.01  # slow enough that both take part
    args = ("send", "--due", "--worker", "--connections", "2", "--json")
    first, second = spawn(collected, *args), spawn(collected, *args)
    outputs = [process.communicate(timeout=120) for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    reports = [json.loads(out)["issues"][0] for out, _ in outputs]
    assert all(r["sent"] > 0 and not r["locked"] for r in reports), reports
    assert sum(r["sent"] for r in reports) == COUNT
    assert reports[0]["worker"] != reports[1]["worker"]
    assert Counter(smtp_server.handler.addresses()) == Counter(audience)
    with Session(collected.engine()) as session:
        rows = session.exec(select(Delivery)).all()
        assert {r.state for r in rows} == {"sent"} and {r.attempts for r in rows} == {1}
        assert {r.claimed_by for r in rows} == {r["worker"] for r in reports}
    assert any(r["finished"] for r in reports)
    shown = collected.run("deliveries", "show", "2022-W51", "--state", "sent", "--json")
    listed = json.loads(shown.stdout)
    assert {row["claimed_by"] for row in listed["rows"]} == {r["worker"] for r in reports}


@postgresql_only
def test_a_worker_killed_mid_send_leaves_only_its_claimed_rows_in_doubt(
    collected: Project, smtp_server: SMTPServer
) -> None:
    """SIGKILL one of two workers: the survivor finishes the issue and, once PostgreSQL has
    dropped the dead one's identity lock, reports exactly its claimed rows `unknown`."""
    audience = prepare(collected, smtp_server, send_at="2022-12-26T08:00")
    smtp_server.handler.delay = 0.02
    args = ("send", "--due", "--worker", "--connections", "2", "--json")
    doomed = spawn(collected, *args)
    deadline = time.monotonic() + 60
    while sent_count(collected) < 10 and doomed.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    survivor = spawn(collected, *args)
    time.sleep(0.3)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    out, errors = survivor.communicate(timeout=120)
    (report,) = json.loads(out)["issues"]
    in_doubt = unknown_rows(collected)
    assert survivor.returncode == 1 and report["recovered"] == len(in_doubt) > 0, out + errors
    assert report["finished"] is True and report["ledger"]["sending"] == 0
    received = Counter(smtp_server.handler.addresses())
    assert {a for a, n in received.items() if n > 1} <= in_doubt
    assert set(audience) - set(received) <= in_doubt
    assert collected.run("deliveries", "resolve", "2022-W51", "--resend").exit_code == 0
    assert collected.run("send", "--due", "--worker").exit_code == 0
    assert set(smtp_server.handler.addresses()) == set(audience)


@postgresql_only
def test_workers_killed_at_random_moments_leave_two_rows_per_connection_in_doubt(
    collected: Project, smtp_server: SMTPServer
) -> None:
    """Rounds of two workers, one of them killed at a random moment (seeded): after each
    kill at most two rows per connection of the dead worker are `sending`; the survivor
    sends the dead one's claimed rows, reports its started ones `unknown` (even when the
    peer dies after the survivor's own share is done) and finishes the issue. Everyone not
    in doubt got exactly one message."""
    audience = prepare(collected, smtp_server, send_at="2022-12-26T08:00")
    smtp_server.handler.delay = 0.005
    rng = random.Random(os.environ.get("NEWSLETTER_TEST_SEED", "workers"))
    connections = 3
    args = ("send", "--due", "--worker", "--connections", str(connections), "--json")
    targets = sorted(rng.sample(range(5, COUNT - 20), 5))
    kills = 0
    for round in range(3):
        pair = [spawn(collected, *args), spawn(collected, *args)]
        rng.shuffle(pair)
        # Rounds but the last: both die, one after the other; in the last, one survives.
        last = round == 2
        for process in pair[: 1 if last else 2]:
            wait_until_sent(collected, targets.pop(0), pair)
            time.sleep(rng.uniform(0, 0.02))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            process.wait()
            with Session(collected.engine()) as session:
                assert rows_sending_by(session, process) <= 2 * connections
    survivor = pair[1]
    out, errors = survivor.communicate(timeout=120)
    assert survivor.returncode in (0, 1), out + errors
    (report,) = json.loads(out)["issues"]
    assert report["finished"] is True, report
    counts = json.loads(collected.run("deliveries", "show", "2022-W51", "--json").stdout)["counts"]
    assert counts["claimed"] == counts["sending"] == counts["queued"] == 0, counts
    assert kills >= 3
    in_doubt = unknown_rows(collected)
    assert len(in_doubt) <= kills * 2 * connections
    received = Counter(smtp_server.handler.addresses())
    for address in audience:
        assert address in in_doubt or received[address] == 1, address


def wait_until_sent(project: Project, target: int, senders: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    while sent_count(project) < target and any(p.poll() is None for p in senders):
        assert time.monotonic() < deadline
        time.sleep(0.002)


def rows_sending_by(session: Session, process: subprocess.Popen[bytes]) -> int:
    """Rows `sending` under that process's worker name (`host:pid:random`)."""
    claimants = session.execute(
        sa.select(Delivery.claimed_by, sa.func.count())
        .where(Delivery.state == "sending")
        .group_by(Delivery.claimed_by)
    ).all()
    return sum(n for who, n in claimants if f":{process.pid}:" in (who or ""))


@postgresql_only
def test_a_worker_that_loses_its_identity_connection_stops_claiming(
    collected: Project, smtp_server: SMTPServer
) -> None:
    """Peers would count such a worker gone: it sends what it holds, claims nothing more,
    and exits 75; a later run sends the rest, each message once."""
    audience = prepare(collected, smtp_server, send_at="2022-12-26T08:00")
    smtp_server.handler.delay = 0.02
    worker = spawn(collected, "send", "--due", "--worker", "--connections", "2", "--json")
    deadline = time.monotonic() + 60
    while sent_count(collected) < 10:
        assert time.monotonic() < deadline and worker.poll() is None
        time.sleep(0.005)
    engine = collected.engine()
    with engine.begin() as connection:
        name = connection.execute(
            sa.select(Delivery.claimed_by).where(col(Delivery.claimed_by).is_not(None)).limit(1)
        ).scalar_one()
        ended = (
            connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = :a"
                ),
                {"a": f"newsletter worker {name}"[:63]},
            )
            .scalars()
            .all()
        )
    assert ended == [True]
    out, errors = worker.communicate(timeout=60)
    assert worker.returncode == 75, out + errors
    (report,) = json.loads(out)["issues"]
    assert "lost the database connection" in report["paused"]
    assert report["ledger"]["sending"] == 0 and report["ledger"]["unknown"] == 0
    assert 0 < report["ledger"]["queued"] < COUNT
    assert collected.run("send", "--due", "--worker").exit_code == 0
    assert Counter(smtp_server.handler.addresses()) == Counter(audience)


@postgresql_only
def test_rows_of_a_worker_that_is_gone_become_unknown_and_a_live_ones_stay(
    collected: Project, smtp_server: SMTPServer
) -> None:
    prepare(collected, smtp_server)
    engine = collected.engine()
    with Session(engine) as session, sender_identity(engine) as live:
        issue = find_approved(session, collected.config, "2022-W51")
        assert issue.id is not None
        ledger.enqueue(session, issue)
        with sender_identity(engine) as ended:
            gone, _ = ledger.claim(session, issue.id, "war-notes", 5, claimed_by=ended.name)
            ledger.start(session, gone[:3], "war-notes", ended.name)
        alive, _ = ledger.claim(session, issue.id, "war-notes", 7, claimed_by=live.name)
        ledger.start(session, alive[:4], "war-notes", live.name)
        session.commit()
        assert sender_alive(engine, live.name) and not sender_alive(engine, ended.name)
        recovered = ledger.recover(session, issue.id, partial(sender_alive, engine))
        # The dead one's started rows are in doubt; those it only claimed are queued again.
        assert recovered == 3
        states = dict(
            session.exec(
                select(Delivery.id, Delivery.state).where(
                    col(Delivery.id).in_([r.id for r in gone + alive])
                )
            ).all()
        )
        assert [states[r.id] for r in gone] == ["unknown"] * 3 + ["queued"] * 2
        assert [states[r.id] for r in alive] == ["sending"] * 4 + ["claimed"] * 3
        # Rows with no claimant (a plain sender's) are in doubt once workers hold the issue.
        session.execute(sa.update(Delivery).where(col(Delivery.id) == alive[0].id).values(
            claimed_by=None))  # fmt: skip
        session.commit()
        assert ledger.recover(session, issue.id, lambda who: who == live.name) == 1


@postgresql_only
def test_workers_and_a_plain_sender_exclude_each_other(collected: Project) -> None:
    engine = collected.engine()
    with (
        run_lock(engine, "send:x", shared=True) as one,
        run_lock(engine, "send:x", shared=True) as two,
    ):
        assert one and two
        with run_lock(engine, "send:x") as plain:
            assert not plain
    with run_lock(engine, "send:x") as plain, run_lock(engine, "send:x", shared=True) as worker:
        assert plain and not worker


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_worker_mode_on_sqlite_is_a_usage_error(collected: Project) -> None:
    result = collected.run("send", "--due", "--worker")
    assert result.exit_code == 2
    assert "--worker needs PostgreSQL" in result.stderr and "--connections" in result.stderr


def test_newsletters_in_two_schemas_of_one_database_do_not_share_send_locks() -> None:
    """Advisory locks are per database: keyed by issue alone, issue 1 of one schema held
    issue 1 of another (a send then reported 'locked' and sent nothing)."""
    import uuid

    import sqlalchemy as sa

    from newsletter.db import make_engine
    from newsletter.delivery.locks import run_lock
    from tests.conftest import POSTGRES_URL

    admin = sa.create_engine(POSTGRES_URL)
    schemas = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    with admin.begin() as connection:
        for schema in schemas:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        first, second = (
            make_engine(f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}")
            for schema in schemas
        )
        with run_lock(first, "issue:1") as got_first, run_lock(second, "issue:1") as got_second:
            assert got_first and got_second
        with run_lock(first, "issue:1") as got, run_lock(first, "issue:1") as again:
            assert got and not again  # within one schema it still excludes
        first.dispose()
        second.dispose()
    finally:
        with admin.begin() as connection:
            for schema in schemas:
                connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@postgresql_only
def test_a_workers_progress_counts_its_own_share(
    collected: Project, smtp_server: SMTPServer
) -> None:
    """Its total is not known beforehand (peers take part): no total, its own messages."""
    from newsletter.audience.tokens import load_key
    from newsletter.delivery.send import SendReport, SendRequest, send
    from newsletter.delivery.transport import open_transport
    from tests.test_send import Recorder

    prepare(collected, smtp_server, send_at="2022-12-26T08:00")
    config = collected.config
    watcher = Recorder()
    result = send(
        config,
        collected.engine(),
        load_key(config.signing_key_file),
        lambda: open_transport(config.transport, config.root),
        SendRequest(due=True, worker=True),
        watcher,
    )
    assert result.exit_code == 0
    (report,) = watcher.reports
    assert isinstance(report, SendReport) and report.sent == COUNT
    assert watcher.totals == [None] and watcher.done[-1] == report.sent
