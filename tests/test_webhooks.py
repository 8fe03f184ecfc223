"""Providers' webhooks on a real server: Amazon SES through SNS (certificate-signed, v1 and
v2) and Mailgun (HMAC), with real-format payloads signed by a test key; forged, tampered,
stale, replayed and off-topic calls change nothing."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from sqlmodel import Session, select

from newsletter.feedback.webhook_events import mailgun, ses
from newsletter.models import FeedbackReport
from tests.conftest import Project
from tests.liveweb import Live, start
from tests.sending import AUDIENCE
from tests.smtpserver import Received, SMTPServer
from tests.test_bounces import status_of, suppressed

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-feedback"
MAILGUN_KEY = "key-test-0123456789abcdef0123456789abcdef"


def _keypair(tmp: Path, name: str) -> tuple[rsa.RSAPrivateKey, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    path = tmp / f"{name}.pem"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key, path


@pytest.fixture
def amazon(tmp_path: Path) -> rsa.RSAPrivateKey:
    key, path = _keypair(tmp_path, "sns.amazonaws.com")
    (tmp_path / "pinned.pem").write_bytes(path.read_bytes())
    return key


@pytest.fixture
def server(
    sent: dict[str, Received],
    ready: Project,
    smtp_server: SMTPServer,
    amazon: rsa.RSAPrivateKey,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Live]:
    monkeypatch.setenv("NEWSLETTER_MAILGUN_SIGNING_KEY", MAILGUN_KEY)
    text = ready.config_file.read_text()
    text = re.sub(r"^# ses_topic_arns = .*$", f'ses_topic_arns = ["{TOPIC}"]', text, flags=re.M)
    text = re.sub(
        r"^# ses_certificate_file = .*$",
        f'ses_certificate_file = "{tmp_path / "pinned.pem"}"',
        text,
        flags=re.M,
    )
    ready.config_file.write_text(text.replace("webhook_max_age = 3600", "webhook_max_age = 600"))
    yield from start(ready, smtp_server, None)


def message_id(item: Received) -> str:
    return str(item.message["Message-ID"])


def sns(
    key: rsa.RSAPrivateKey,
    notification: dict[str, Any],
    *,
    version: str = "2",
    topic: str = TOPIC,
    when: datetime | None = None,
    kind: str = "Notification",
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "Type": kind,
        "MessageId": f"id-{time.time_ns()}",
        "TopicArn": topic,
        "Message": json.dumps(notification),
        "Timestamp": (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "SignatureVersion": version,
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-x.pem",
        **(extra or {}),
    }
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(ses.string_to_sign(message), padding.PKCS1v15(), digest)
    message["Signature"] = base64.b64encode(signature).decode()
    return message


def ses_bounce(item: Received, bounce_type: str, subtype: str, diagnostic: str) -> dict[str, Any]:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": subtype,
            "bouncedRecipients": [
                {"emailAddress": item.recipients[0], "action": "failed",
                 "status": "5.1.1" if "unknown" in diagnostic else "5.0.0",
                 "diagnosticCode": diagnostic}
            ],
            "timestamp": "2022-12-26T09:00:00.000Z",
            "feedbackId": "0100abc",
        },
        "mail": {
            "messageId": "0100ses-id",
            "source": item.sender,
            "destination": [item.recipients[0]],
            "headers": [{"name": "Message-ID", "value": message_id(item)}],
            "commonHeaders": {"messageId": message_id(item)},
        },
    }  # fmt: skip


def ses_complaint(item: Received) -> dict[str, Any]:
    return {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": "redacted@example.net"}],
            "complaintFeedbackType": "abuse",
            "timestamp": "2022-12-26T09:00:00.000Z",
        },
        "mail": {"messageId": "0100ses-id2", "source": item.sender,
                 "commonHeaders": {"messageId": message_id(item)}},
    }  # fmt: skip


def post(live: Live, provider: str, body: dict[str, Any] | bytes) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{live.base}/webhooks/{provider}", content=data, timeout=10)


def reports(project: Project) -> int:
    with Session(project.engine()) as session:
        return len(session.exec(select(FeedbackReport)).all())


def test_ses_notifications_signed_by_amazon_act_and_forgeries_do_not(
    server: Live, sent: dict[str, Received], amazon: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    project = server.project
    hard = sns(amazon, ses_bounce(sent[AUDIENCE[0]], "Permanent", "General",
                                  "smtp; 550 5.1.1 user unknown"))  # fmt: skip
    impostor, _ = _keypair(tmp_path, "impostor")
    forged = sns(impostor, ses_bounce(sent[AUDIENCE[1]], "Permanent", "General",
                                      "smtp; 550 5.1.1 user unknown"))  # fmt: skip
    other = ses_bounce(sent[AUDIENCE[2]], "Permanent", "General", "550 5.1.1 user unknown")
    tampered = dict(hard, Message=json.dumps(other))
    stale = sns(amazon, ses_bounce(sent[AUDIENCE[3]], "Permanent", "General", "550 user unknown"),
                when=datetime.now(UTC) - timedelta(hours=2))  # fmt: skip
    elsewhere = sns(amazon, ses_bounce(sent[AUDIENCE[4]], "Permanent", "General", "550 unknown"),
                    topic="arn:aws:sns:eu-west-1:999999999999:other")  # fmt: skip
    unsigned_url = dict(forged, SigningCertURL="https://evil.example/cert.pem")
    for refused in (forged, tampered, stale, elsewhere, unsigned_url):
        assert post(server, "ses", refused).status_code == 403
    assert post(server, "ses", b"{not json").status_code == 400
    assert reports(project) == 0

    answer = post(server, "ses", hard)
    assert answer.status_code == 200 and answer.json() == {"accepted": 1}
    assert status_of(project, AUDIENCE[0]) == "bounced"
    assert post(server, "ses", hard).status_code == 200  # replayed: recognised
    assert reports(project) == 1

    full = sns(amazon, ses_bounce(sent[AUDIENCE[5]], "Transient", "MailboxFull",
                                  "smtp; 452 4.2.2 mailbox full"), version="1")  # fmt: skip
    assert post(server, "ses", full).status_code == 200
    assert status_of(project, AUDIENCE[5]) == "active"
    assert post(server, "ses", sns(amazon, ses_complaint(sent[AUDIENCE[6]]))).status_code == 200
    assert status_of(project, AUDIENCE[6]) == "complained"
    assert suppressed(project)[AUDIENCE[6]] == "complained"
    for n in (1, 2, 3, 4):
        assert status_of(project, AUDIENCE[n]) == "active"


def test_an_sns_subscription_confirmation_is_verified_and_goes_only_to_amazon(
    server: Live, amazon: rsa.RSAPrivateKey
) -> None:
    extra = {"Token": "abc", "SubscribeURL": "https://evil.example/confirm?Token=abc"}
    to_evil = sns(amazon, {}, kind="SubscriptionConfirmation", extra=extra)
    assert post(server, "ses", to_evil).status_code == 400
    extra["SubscribeURL"] = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription"
    assert post(server, "ses", sns(amazon, {}, kind="SubscriptionConfirmation",
                                   extra=extra)).status_code == 200  # fmt: skip


def mailgun_call(item: Received, event: dict[str, Any], *, age: float = 0) -> dict[str, Any]:
    timestamp = str(int(time.time() - age))
    token = f"tok{time.time_ns()}"
    data = {
        "id": f"ev-{time.time_ns()}",
        "timestamp": float(timestamp),
        "recipient": item.recipients[0],
        "message": {"headers": {"message-id": message_id(item).strip("<>"),
                                "to": item.recipients[0]}},
        **event,
    }  # fmt: skip
    return {
        "signature": {"timestamp": timestamp, "token": token,
                      "signature": mailgun.sign(MAILGUN_KEY, timestamp, token)},
        "event-data": data,
    }  # fmt: skip


FAILED_HARD = {
    "event": "failed",
    "severity": "permanent",
    "reason": "bounce",
    "delivery-status": {"code": 550, "message": "5.1.1 The email account that you tried to "
                        "reach does not exist.", "description": ""},
}  # fmt: skip
BLOCKED = {
    "event": "failed",
    "severity": "permanent",
    "reason": "generic",
    "delivery-status": {"code": 554, "message": "5.7.1 Service unavailable; Client host "
                        "[192.0.2.1] blocked using Spamhaus", "description": ""},
}  # fmt: skip


def test_mailgun_events_signed_with_the_key_act_and_others_do_not(
    server: Live, sent: dict[str, Received]
) -> None:
    project = server.project
    good = mailgun_call(sent[AUDIENCE[0]], FAILED_HARD)
    forged = mailgun_call(sent[AUDIENCE[1]], FAILED_HARD)
    forged["signature"]["signature"] = "0" * 64
    stale = mailgun_call(sent[AUDIENCE[2]], FAILED_HARD, age=3600)
    for refused in (forged, stale):
        assert post(server, "mailgun", refused).status_code == 403
    assert reports(project) == 0
    assert post(server, "mailgun", good).json() == {"accepted": 1}
    assert post(server, "mailgun", good).status_code == 200  # a replay within the window
    # Mailgun signs the timestamp and token, not the event: good's signature with another
    # reader's event (and message) is a replay, and changes nothing.
    other = mailgun_call(sent[AUDIENCE[3]], FAILED_HARD)
    swapped = {"signature": good["signature"], "event-data": other["event-data"]}
    assert post(server, "mailgun", swapped).status_code == 200
    assert status_of(project, AUDIENCE[3]) == "active"
    assert reports(project) == 1 and status_of(project, AUDIENCE[0]) == "bounced"
    assert post(server, "mailgun", mailgun_call(sent[AUDIENCE[4]], BLOCKED)).status_code == 200
    assert status_of(project, AUDIENCE[4]) == "active"
    complained = mailgun_call(sent[AUDIENCE[5]], {"event": "complained"})
    assert post(server, "mailgun", complained).status_code == 200
    assert status_of(project, AUDIENCE[5]) == "complained"
    # An event whose message is not ours (no token in its headers) is unverified.
    stranger = mailgun_call(sent[AUDIENCE[7]], FAILED_HARD)
    stranger["event-data"]["message"] = {"headers": {"message-id": "abc@elsewhere.example"}}
    stranger["signature"] = mailgun_call(sent[AUDIENCE[7]], FAILED_HARD)["signature"]
    assert post(server, "mailgun", stranger).status_code == 200
    assert status_of(project, AUDIENCE[7]) == "active"


def test_a_provider_that_is_not_configured_is_not_there(server: Live) -> None:
    assert post(server, "postmark", {}).status_code == 404
    assert httpx.get(f"{server.base}/webhooks/ses", timeout=10).status_code == 405
    assert post(server, "mailgun", b"x" * 300_000).status_code == 413


def test_a_mailgun_token_is_spent_by_any_event(server: Live, sent: dict[str, Received]) -> None:
    """A `delivered` call acts on nothing, but its token is spent: its signature replayed with
    a forged `complained` (or a third time) changes nothing."""
    project = server.project
    delivered = mailgun_call(sent[AUDIENCE[0]], {"event": "delivered"})
    assert post(server, "mailgun", delivered).json() == {"accepted": 0}
    complained = mailgun_call(sent[AUDIENCE[0]], {"event": "complained"})
    forged = {"signature": delivered["signature"], "event-data": complained["event-data"]}
    for _ in range(2):
        assert post(server, "mailgun", forged).json() == {"accepted": 0}
    assert status_of(project, AUDIENCE[0]) == "active" and reports(project) == 0
    # A call of its own, with its own token, still acts.
    assert post(server, "mailgun", complained).json() == {"accepted": 1}
    assert status_of(project, AUDIENCE[0]) == "complained"


def test_json_nested_too_deep_is_a_400_for_either_provider(server: Live) -> None:
    deep = b'{"a": ' * 20_000 + b"1" + b"}" * 20_000  # within the 256 KB body cap
    for provider in ("ses", "mailgun"):
        assert post(server, provider, deep).status_code == 400
        assert post(server, provider, b"[" * 100_000 + b"]" * 100_000).status_code == 400
    assert httpx.get(f"{server.base}/subscribe", timeout=10).status_code == 200


def test_the_sns_certificate_comes_only_from_sns_hosts_and_its_fetches_are_bounded(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    ready = project
    for url in (
        "https://sns.s3.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.eu-west-1.amazonaws.com:8443/SimpleNotificationService-x.pem",
        "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-x.pem",
        "https://user@sns.eu-west-1.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.eu-west-1.amazonaws.com.evil.example/SimpleNotificationService-x.pem",
        "https://sns.eu-west-1.amazonaws.com/other/file.pem",
    ):
        with pytest.raises(ses.Refused):
            ses._certificate(ready.config, url)
    assert ses.amazon_url("https://sns.us-gov-west-1.amazonaws.com/x")
    assert ses.amazon_url("https://sns.cn-north-1.amazonaws.com.cn/x")

    calls: list[str] = []
    release = threading.Event()

    def slow_and_failing(url: str) -> object:
        calls.append(url)
        release.wait(5)
        raise ses.Refused("no answer", 503)

    monkeypatch.setattr(ses, "_fetch_certificate", slow_and_failing)
    url = "https://sns.eu-west-2.amazonaws.com/SimpleNotificationService-abc.pem"
    first = threading.Thread(
        target=lambda: pytest.raises(ses.Refused, ses._certificate, ready.config, url)
    )
    first.start()
    while not calls:
        time.sleep(0.01)
    # While one fetch is out, other calls for it are refused at once, not queued behind it.
    started = time.monotonic()
    with pytest.raises(ses.Refused) as refusal:
        ses._certificate(ready.config, url)
    assert refusal.value.status == 503 and time.monotonic() - started < 0.5
    release.set()
    first.join(10)
    # Its failure is remembered: no second fetch within the window.
    with pytest.raises(ses.Refused):
        ses._certificate(ready.config, url)
    assert calls == [url]
    ses._failures.clear()
