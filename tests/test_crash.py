"""Real processes: a sender killed with SIGKILL at random moments and resumed, and two
`send --due` runs started together. Only rows the ledger reports `unknown` may arrive
twice; nobody is lost."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import sqlalchemy as sa
from sqlmodel import Session

from newsletter.audience import subscribers
from newsletter.models import Delivery
from tests.conftest import Project
from tests.smtpserver import SMTPServer

COUNT = 150


def prepare(project: Project, smtp_server: SMTPServer, send_at: str | None = None) -> list[str]:
    text = project.config_file.read_text()
    project.config_file.write_text(
        text.replace('transport = "file://outbox"', f'transport = "{smtp_server.url}"')
    )
    assert project.run("issue", "new", "--week", "2022-W51").exit_code == 0
    path = project.root / "issues" / "2022-W51.md"
    path.write_text(path.read_text() + "Dear readers.\n")
    args = ["issue", "approve", "2022-W51"] + (["--send-at", send_at] if send_at else [])
    assert project.run(*args).exit_code == 0
    audience = [f"r{n:04d}@example.org" for n in range(COUNT)]
    with Session(project.engine()) as session:
        for email in audience:
            subscribers.add(session, "war-notes", email)
        session.commit()
    return audience


def spawn(project: Project, *args: str) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "NEWSLETTER_CONFIG": str(project.config_file),
        "NEWSLETTER_DATABASE_URL": project.database_url,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", *args],
        env=env, cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def unknown_rows(project: Project) -> set[str]:
    result = project.run("deliveries", "show", "2022-W51", "--state", "unknown", "--json")
    return {row["email"] for row in json.loads(result.stdout)["rows"]}


def sent_count(project: Project, engine: sa.Engine | None = None) -> int:
    with Session(engine or project.engine()) as session:
        return int(
            session.execute(
                sa.select(sa.func.count()).select_from(Delivery).where(Delivery.state == "sent")
            ).scalar_one()
        )


def ledger_states(project: Project) -> Counter[str]:
    with Session(project.engine()) as session:
        return Counter(
            dict(
                session.execute(
                    sa.select(Delivery.state, sa.func.count()).group_by(Delivery.state)
                ).all()
            )
        )


def kill_at_random_moments(
    project: Project,
    rng: random.Random,
    targets: list[int],
    args: tuple[str, ...],
    most: int,
    jitter: float = 0.02,
) -> int:
    """Start a sender, kill it with SIGKILL once `target` rows are sent (and up to `jitter`
    seconds more), for each target; check after each kill that at most `most` rows are
    left `sending`. Returns how many kills hit a running sender."""
    kills = 0
    engine = project.engine()  # once: opening one per poll (a migration check each) made
    # the poll slower than the last rows under load, and the sender finished unkilled
    for target in targets:
        process = spawn(project, *args)
        deadline = time.monotonic() + 60
        while sent_count(project, engine) < target and process.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.002)
        time.sleep(rng.uniform(0, jitter))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)  # mid-send: rows queued, claimed, sending, sent
            kills += 1
        process.wait()
        states = ledger_states(project)
        assert states["sending"] <= most, states
    engine.dispose()
    return kills


def check_exactly_once(received: Counter[str], audience: list[str], in_doubt: set[str]) -> None:
    """Only rows reported `unknown` may have arrived twice or not at all."""
    for address in audience:
        if address not in in_doubt:
            assert received[address] == 1, (address, received[address])
    assert set(received) <= set(audience)


def test_kill_9_at_random_moments_then_resume(collected: Project, smtp_server: SMTPServer) -> None:
    audience = prepare(collected, smtp_server)
    rng = random.Random(os.environ.get("NEWSLETTER_TEST_SEED", "kill-9"))
    connections = 3
    targets = sorted(rng.sample(range(5, COUNT - 10), 6))
    args = ("send", "2022-W51", "--connections", str(connections), "--rate", "300")
    kills = kill_at_random_moments(collected, rng, targets, args, 2 * connections)
    assert kills >= 4, "the sender finished before it could be killed: slow it down"
    finished = collected.run("send", "2022-W51", "--json")
    assert finished.exit_code in (0, 1), finished.output
    report = json.loads(finished.stdout)
    assert report["finished"] is True
    in_doubt = unknown_rows(collected)
    assert in_doubt, "a kill mid-send leaves a row in doubt; none were reported"
    assert len(in_doubt) <= kills * 2 * connections
    check_exactly_once(Counter(smtp_server.handler.addresses()), audience, in_doubt)
    # Settle the doubtful rows by resending: now everybody has it.
    assert collected.run("deliveries", "resolve", "2022-W51", "--resend").exit_code == 0
    assert collected.run("send", "2022-W51").exit_code == 0
    assert set(smtp_server.handler.addresses()) == set(audience)


def test_two_due_runs_started_together_send_each_message_once(
    collected: Project, smtp_server: SMTPServer
) -> None:
    audience = prepare(collected, smtp_server, send_at="2022-12-26T08:00")
    smtp_server.handler.delay = 0.002
    first = spawn(collected, "send", "--due", "--json")
    second = spawn(collected, "send", "--due", "--json")
    outputs = [process.communicate(timeout=120) for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    reports = [json.loads(out)["issues"] for out, _ in outputs]
    sent = [sum(issue["sent"] for issue in report) for report in reports]
    assert sorted(sent)[1] > 0 and sum(sent) == COUNT
    assert Counter(smtp_server.handler.addresses()) == Counter(audience)
    again = collected.run("send", "--due", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["issues"] == []


def test_against_a_slow_relay_a_kill_leaves_one_row_per_connection_in_doubt(
    collected: Project, smtp_server: SMTPServer
) -> None:
    """A relay that takes 30 ms a message, as remote ones do: a connection starts its next
    row only with its current one's outcome, so a kill leaves at most the messages on the
    wire in doubt, one per connection."""
    audience = prepare(collected, smtp_server)
    smtp_server.handler.delay = 0.03
    rng = random.Random(os.environ.get("NEWSLETTER_TEST_SEED", "slow-relay"))
    connections = 3
    args = ("send", "2022-W51", "--connections", str(connections))
    targets = sorted(rng.sample(range(5, COUNT // 2), 3))
    kills = kill_at_random_moments(collected, rng, targets, args, connections, jitter=0.05)
    assert kills == 3
    assert collected.run("send", "2022-W51").exit_code in (0, 1)
    in_doubt = unknown_rows(collected)
    assert 0 < len(in_doubt) <= kills * connections
    check_exactly_once(Counter(smtp_server.handler.addresses()), audience, in_doubt)
