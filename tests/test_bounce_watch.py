"""`bounces process imaps://... --watch` against a real Dovecot: mail is processed as it
arrives (IMAP IDLE), a lost connection comes back with back-off, SIGTERM ends the run
cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from newsletter.audience.tokens import load_key
from newsletter.feedback.policy import Handled
from newsletter.feedback.process import WatchReport, watch
from tests.conftest import Project
from tests.imapserver import PASSWORD, IMAPServer
from tests.sending import AUDIENCE
from tests.smtpserver import Received, free_port
from tests.test_bounces import returned_mail, status_of

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _until(check: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_mail_is_processed_as_it_arrives_and_a_lost_connection_comes_back(
    sent: dict[str, Received],
    ready: Project,
    imap_server: IMAPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", PASSWORD)
    mail = returned_mail(sent)
    seen: list[Handled] = []
    notes: list[str] = []
    stop = threading.Event()
    result: list[WatchReport] = []
    config = ready.config
    runner = threading.Thread(
        target=lambda: result.append(
            watch(
                config,
                ready.engine(),
                load_key(config.signing_key_file),
                imap_server.url,
                stop,
                on_report=seen.append,
                on_note=notes.append,
            )
        )
    )
    runner.start()
    try:
        time.sleep(1.0)  # idling now, the folder empty
        imap_server.append([mail[AUDIENCE[0]]])
        _until(lambda: len(seen) == 1)
        assert seen[0].action == "bounced" and status_of(ready, AUDIENCE[0]) == "bounced"
        _until(lambda: imap_server.count("Processed") == 1)
        # The server drops every connection of the user: the watch reconnects and reads on.
        kicked = subprocess.run(
            ["doveadm", "-c", str(imap_server.root / "dovecot.conf"), "kick", "bounces"],
            capture_output=True,
            text=True,
        )
        assert kicked.returncode == 0, kicked.stderr
        imap_server.append([mail[AUDIENCE[5]]])
        _until(lambda: len(seen) == 2, 30)
        assert seen[1].action == "complained"
        assert notes and "trying again" in notes[0] and PASSWORD not in " ".join(notes)
    finally:
        stopped = time.monotonic()
        stop.set()
        runner.join(timeout=10)
    assert not runner.is_alive() and time.monotonic() - stopped < 5
    assert result[0].messages == 2 and result[0].reconnects >= 1
    assert imap_server.count("INBOX") == 0 and imap_server.count("Processed") == 2


def test_a_server_that_is_not_there_is_tried_again_until_stopped(
    ready: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", PASSWORD)
    notes: list[str] = []
    stop = threading.Event()
    config = ready.config
    url = f"imap://bounces@127.0.0.1:{free_port()}/INBOX"
    runner = threading.Thread(
        target=watch,
        args=(config, ready.engine(), load_key(config.signing_key_file), url, stop),
        kwargs={"on_note": notes.append},
    )
    runner.start()
    _until(lambda: len(notes) >= 2, 10)  # after 1 s, then 2 s: backing off
    assert "connection refused" in notes[0]
    waits = [float(n.rsplit("again in ", 1)[1].split()[0]) for n in notes[:2]]
    assert waits[1] > waits[0]
    stop.set()
    runner.join(timeout=5)
    assert not runner.is_alive()


def test_the_command_ends_cleanly_on_sigterm(
    sent: dict[str, Received], ready: Project, imap_server: IMAPServer, tmp_path: Path
) -> None:
    env = os.environ | {
        "NEWSLETTER_CONFIG": str(ready.config_file),
        "NEWSLETTER_IMAP_PASSWORD": PASSWORD,
    }
    command = [sys.executable, "-m", "newsletter", "bounces", "process", imap_server.url]
    usage = subprocess.run([*command, "/tmp/x", "--watch"], env=env, capture_output=True)
    assert usage.returncode == 2 and b"one IMAP folder" in usage.stderr
    process = subprocess.Popen(
        [*command, "--watch", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        imap_server.append([returned_mail(sent)[AUDIENCE[3]]])
        line = process.stdout.readline()  # printed as the report is acted on
        assert json.loads(line)["action"] == "bounced"
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0
    assert process.stderr is not None
    tail = process.stderr.read()
    assert "stopped: 1 message read" in tail and "Traceback" not in tail
