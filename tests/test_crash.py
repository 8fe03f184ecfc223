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
    result = project.run("deliveries", "2022-W51", "--state", "unknown", "--json")
    return {row["email"] for row in json.loads(result.stdout)["rows"]}


def sent_count(project: Project) -> int:
    with Session(project.engine()) as session:
        return int(
            session.execute(
                sa.select(sa.func.count()).select_from(Delivery).where(Delivery.state == "sent")
            ).scalar_one()
        )


def test_kill_9_at_random_moments_then_resume(collected: Project, smtp_server: SMTPServer) -> None:
    audience = prepare(collected, smtp_server)
    rng = random.Random(os.environ.get("NEWSLETTER_TEST_SEED", "kill-9"))
    targets = sorted(rng.sample(range(10, COUNT - 10), 3))
    kills = 0
    for target in targets:
        process = spawn(collected, "send", "2022-W51", "--connections", "3", "--rate", "150")
        deadline = time.monotonic() + 60
        while sent_count(collected) < target and process.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)  # mid-send: rows are queued, sending and sent
            kills += 1
        process.wait()
    assert kills >= 2, "the sender finished before it could be killed: slow it down"
    finished = collected.run("send", "2022-W51", "--json")
    assert finished.exit_code in (0, 1), finished.output
    report = json.loads(finished.stdout)
    assert report["finished"] is True
    in_doubt = unknown_rows(collected)
    assert in_doubt, "a kill mid-send leaves rows in doubt; none were reported"
    received = Counter(smtp_server.handler.addresses())
    twice = {address for address, n in received.items() if n > 1}
    assert twice <= in_doubt, "a message arrived twice that the ledger did not report unknown"
    missing = set(audience) - set(received)
    assert missing <= in_doubt, "a recipient got nothing and the ledger did not say so"
    # At most what a sender holds claimed: one per connection plus 1.5 batches of 32.
    assert len(in_doubt) <= kills * (3 + 48)
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
