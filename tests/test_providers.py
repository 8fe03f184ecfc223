"""Sending through providers' HTTP APIs, against servers on 127.0.0.1 that follow their
documented endpoints (Postmark, Mailgun) and moto's SES: every recipient accounted for in
the ledger, with the provider's id; a refused recipient failed with the provider's words;
429 waited out and retried in the run; 5xx deferred; a reply that never came in doubt;
secrets never in the output."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
from sqlmodel import Session, select

from newsletter.audience import subscribers
from newsletter.models import Delivery
from tests.conftest import Project
from tests.providerservers import MAILGUN_KEY, POSTMARK_TOKEN, Provider
from tests.sending import AUDIENCE

SPECIAL = ["bad-one@example.org", "busy-one@example.org", "down-one@example.org",
           "slow-one@example.org"]  # fmt: skip


def _audience(project: Project) -> None:
    with Session(project.engine()) as session:
        for email in SPECIAL:
            subscribers.add(session, "war-notes", email)
        session.commit()


def _rows(project: Project) -> dict[str, Delivery]:
    with Session(project.engine()) as session:
        return {row.email: row for row in session.exec(select(Delivery)).all()}


def _send(project: Project, transport: str) -> tuple[int, dict[str, object], str]:
    result = project.run("send", "2022-W51", "--json", "--connections", "2", "--transport",
                         transport)  # fmt: skip
    assert result.exit_code in (0, 1, 75), result.output
    return result.exit_code, json.loads(result.stdout), result.stderr


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("kind", ["postmark", "mailgun"])
def test_an_issue_goes_out_through_the_api_with_every_recipient_accounted_for(
    ready: Project,
    kind: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server: Provider = request.getfixturevalue(f"{kind}_server")
    monkeypatch.setenv("NEWSLETTER_POSTMARK_TOKEN", POSTMARK_TOKEN)
    monkeypatch.setenv("NEWSLETTER_MAILGUN_API_KEY", MAILGUN_KEY)
    _audience(ready)
    url = {
        # One message a batch: each recipient's fate its own (a batch shares a throttle,
        # an outage or a missing answer; see the batch test below).
        "postmark": f"postmark://?endpoint={server.endpoint}&timeout=1&batch=1",
        "mailgun": f"mailgun://news.example.org?endpoint={server.endpoint}&timeout=1",
    }[kind]
    code, report, stderr = _send(ready, url)
    rows = _rows(ready)
    # Everyone in the ledger, in the state the provider's answer means.
    assert {e: rows[e].state for e in SPECIAL} == {
        "bad-one@example.org": "failed",
        "busy-one@example.org": "sent",  # 429, waited out, sent in the same run
        "down-one@example.org": "deferred",
        "slow-one@example.org": "unknown",  # accepted there, but no answer: in doubt
    }
    assert all(rows[e].state == "sent" for e in AUDIENCE)
    assert code == 75  # the deferred row waits for a later run
    # The provider's id kept for each accepted message, so their webhooks find the row.
    for email in [*AUDIENCE, "busy-one@example.org"]:
        assert rows[email].provider_id == server.ids[email]
    refusal = rows["bad-one@example.org"].last_error or ""
    assert (
        ("inactive" in refusal.lower())
        if kind == "postmark"
        else ("not a valid address" in refusal)
    )
    assert report["waited"] >= 1 and "throttled 1.0 s" in str(report["waited_for"])
    # Never sent twice blindly: the next run leaves the row in doubt alone (and the
    # deferred one until its retry time).
    before = server.calls
    code, report, _ = _send(ready, url)
    assert _rows(ready)["slow-one@example.org"].state == "unknown"
    assert server.calls == before
    # What went is our message: its headers, one-click unsubscribe included.
    sent = server.accepted[AUDIENCE[0]]
    if kind == "mailgun":
        assert (
            isinstance(sent, bytes) and b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in sent
        )
    else:
        assert isinstance(sent, dict)
        names = {h["Name"] for h in sent["Headers"]}  # type: ignore[index, union-attr]
        assert {"List-Unsubscribe", "List-Unsubscribe-Post", "Message-ID"} <= names
        assert "Bakhmut" in str(sent["HtmlBody"]) and "Bakhmut" in str(sent["TextBody"])
    # Rows chosen to go again: the one in doubt (they may get two), the failed one left out
    # because that reader has been suppressed since.
    with Session(ready.engine()) as session:
        subscribers.suppress(session, "bad-one@example.org", "manual")
        session.commit()
    dry = ready.run("deliveries", "resend", "2022-W51", "--state", "failed")
    assert "would be queued" in dry.stdout and "left out bad-one@example.org" in dry.stderr
    assert _rows(ready)["bad-one@example.org"].state == "failed"
    again = ready.run("deliveries", "resend", "2022-W51", "--state", "unknown", "--yes")
    assert again.exit_code == 0 and "1 unknown row queued again" in again.stdout
    _send(ready, url)
    assert server.calls == before + 1
    assert POSTMARK_TOKEN not in stderr + json.dumps(report)
    assert MAILGUN_KEY not in stderr + json.dumps(report)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_wrong_credentials_stop_the_send_and_mark_nobody(
    ready: Project, postmark_server: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_POSTMARK_TOKEN", "wrong-token")
    result = ready.run(
        "send", "2022-W51", "--transport", f"postmark://?endpoint={postmark_server.endpoint}"
    )
    assert result.exit_code == 2 and "NEWSLETTER_POSTMARK_TOKEN" in result.stderr
    assert "wrong-token" not in result.output
    assert {row.state for row in _rows(ready).values()} == {"queued"}
    missing = ready.run("send", "2022-W51", "--transport", "mailgun://news.example.org")
    assert missing.exit_code == 2 and "NEWSLETTER_MAILGUN_API_KEY" in missing.stderr
    secret = ready.run("send", "2022-W51", "--transport", "mailgun://api:key-1@news.example.org")
    assert secret.exit_code == 2 and "key-1" not in secret.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def ses_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's server mode: Amazon SES on 127.0.0.1."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_issue_goes_out_through_ses(ready: Project, ses_server: str) -> None:
    import boto3

    ses = boto3.client("sesv2", region_name="eu-west-1", endpoint_url=ses_server)
    url = f"ses://eu-west-1?endpoint={ses_server}"
    # Not yet a verified identity: the send stops with SES's words, and no reader is failed.
    refused = ready.run("send", "2022-W51", "--transport", url)
    assert refused.exit_code == 2 and "authority to send" in refused.stderr
    # moto's server now and then answers a concurrent request with its own 500: that row is
    # deferred (no client-side retry resends it), and nobody is failed.
    assert {row.state for row in _rows(ready).values()} <= {"queued", "deferred"}
    ready.run("deliveries", "resend", "2022-W51", "--state", "deferred", "--yes")
    assert {row.state for row in _rows(ready).values()} == {"queued"}
    ses.create_email_identity(EmailIdentity="notes@example.org")
    code, report, stderr = _send(ready, url)
    rows = _rows(ready)
    assert code == 0 and {row.state for row in rows.values()} == {"sent"}
    assert all(row.provider_id for row in rows.values())
    v1 = boto3.client("ses", region_name="eu-west-1", endpoint_url=ses_server)
    # moto counts a raw message once per address in its Destination and again per To header.
    assert int(v1.get_send_quota()["SentLast24Hours"]) == 2 * len(AUDIENCE)
    # The credentials reach neither the output nor an error.
    assert "testing-secret" not in stderr + refused.output + json.dumps(report)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_postmark_batches_account_for_each_message(
    ready: Project, postmark_server: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch endpoint: ten messages a request; an inactive recipient fails alone; a
    batch whose answer never came leaves each of its messages in doubt."""
    monkeypatch.setenv("NEWSLETTER_POSTMARK_TOKEN", POSTMARK_TOKEN)
    with Session(ready.engine()) as session:
        subscribers.add(session, "war-notes", "bad-one@example.org")
        session.commit()
    url = f"postmark://?endpoint={postmark_server.endpoint}&batch=10&timeout=1"
    code, report, _ = _send(ready, url)
    rows = _rows(ready)
    assert code == 1 and report["sent"] == len(AUDIENCE) and report["failed"] == 1
    assert rows["bad-one@example.org"].state == "failed"
    assert "Inactive recipient" in (rows["bad-one@example.org"].last_error or "")
    assert postmark_server.calls <= 4  # 21 messages in batches of ten (two connections)
    for email in AUDIENCE:
        assert rows[email].provider_id == postmark_server.ids[email]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_postmark_batch_without_an_answer_is_in_doubt_whole(
    ready: Project, postmark_server: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_POSTMARK_TOKEN", POSTMARK_TOKEN)
    with Session(ready.engine()) as session:
        subscribers.add(session, "war-notes", "slow-one@example.org")
        session.commit()
    url = f"postmark://?endpoint={postmark_server.endpoint}&batch=50&timeout=1"
    result = ready.run("send", "2022-W51", "--json", "--connections", "1", "--transport", url)
    assert result.exit_code == 1, result.output
    states = {row.state for row in _rows(ready).values()}
    assert states == {"unknown"}  # all 21 went in one request whose answer never came
    assert postmark_server.calls == 1
