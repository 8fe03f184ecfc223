"""Amazon SES bounce and complaint notifications, delivered through an SNS topic.

SNS signs each message with Amazon's certificate: the signature (RSA with SHA-1 for
SignatureVersion 1, SHA-256 for 2) covers the message's fields in a fixed order, and the
certificate is fetched from SigningCertURL only when that is https on
`sns.<region>.amazonaws.com` (else anyone could sign with their own), or read from the
pinned `[bounces] ses_certificate_file`. Only topics listed in `ses_topic_arns` are
believed, and only within `webhook_max_age` of their timestamp. A subscription
confirmation is verified the same way before its SubscribeURL (also checked to be Amazon's)
is visited.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from newsletter.config import Config
from newsletter.feedback.classify import normal_status, severity
from newsletter.feedback.parse import Report
from newsletter.feedback.webhook_events.common import Call, Event, Refused, fresh, parse_json

NAME = "ses"
log = logging.getLogger("newsletter.feedback.ses")

# sns.<region>.amazonaws.com: a real region's shape (us-east-1, eu-central-2,
# us-gov-west-1, cn-north-1 under .com.cn), not any label (sns.s3.amazonaws.com is not SNS).
_AMAZON_HOST = re.compile(
    r"sns\.[a-z]{2}(?:-gov|-iso[a-z]?)?-(?:north|south|east|west|central|northeast|southeast"
    r"|northwest|southwest)-[1-9]\.amazonaws\.com(?:\.cn)?\Z"
)
_CERTIFICATE_PATH = re.compile(r"/SimpleNotificationService-[A-Za-z0-9]{1,64}\.pem\Z")
_SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),  # fmt: skip
}
_certificates: dict[str, x509.Certificate] = {}
_failures: dict[str, float] = {}  # URL: when its fetch last failed (time.monotonic)
_fetching: set[str] = set()
_lock = threading.Lock()
FETCH_SECONDS = 3.0
FAILURE_SECONDS = 300.0
FETCHES = 2
MAX_CERTIFICATE = 16 * 1024
# Bounce sub-types that are about the message or the mailbox's state, not the address.
_SOFT_SUBTYPES = {"MailboxFull", "MessageTooLarge", "ContentRejected", "AttachmentRejected"}


def enabled(config: Config) -> bool:
    return bool(config.bounces.ses_topic_arns)


def amazon_url(url: str) -> bool:
    """https on port 443 of a real SNS region's host, with no user or password."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and port in (None, 443)
        and parts.username is None
        and parts.password is None
        and bool(_AMAZON_HOST.match(parts.hostname or ""))
    )


def string_to_sign(message: dict[str, Any]) -> bytes:
    fields = _SIGNED.get(str(message.get("Type")))
    if fields is None:
        raise Refused(f"SNS message type {message.get('Type')!r} is not read", 400)
    lines = []
    for name in fields:
        if name in message and message[name] is not None:
            lines += [name, str(message[name])]
    return ("\n".join(lines) + "\n").encode()


def read(body: bytes, config: Config, now: datetime | None = None) -> Call:
    settings = config.bounces  # enabled (topics listed): feedback/webhooks.receive checks
    message = parse_json(body, "the SNS message")
    try:
        assert isinstance(message, dict)
        topic, kind = str(message["TopicArn"]), str(message["Type"])
        stamp = datetime.fromisoformat(str(message["Timestamp"]).replace("Z", "+00:00"))
        signature = base64.b64decode(str(message["Signature"]), validate=True)
        version = str(message.get("SignatureVersion", "1"))
    except (ValueError, KeyError, TypeError, AssertionError, binascii.Error):
        raise Refused("not an SNS message", 400) from None
    if topic not in settings.ses_topic_arns:
        raise Refused(f"SNS topic {topic} is not in [bounces] ses_topic_arns")
    certificate = _certificate(config, str(message.get("SigningCertURL", "")))
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or version not in ("1", "2"):
        raise Refused("unexpected SNS signing key or version")
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 - SNS v1
    try:
        key.verify(signature, string_to_sign(message), padding.PKCS1v15(), digest)
    except InvalidSignature:
        raise Refused("bad SNS signature") from None
    fresh(stamp, now or datetime.now(UTC), settings.webhook_max_age)
    call = f"ses:{message.get('MessageId', '')}"
    if kind == "SubscriptionConfirmation":
        _confirm(str(message.get("SubscribeURL", "")))
        return Call(call, [])
    notification = parse_json(str(message.get("Message", "")), "the SES notification")
    if not isinstance(notification, dict):
        raise Refused("the SNS message carries no SES notification", 400)
    return Call(call, _events(str(message.get("MessageId", "")), notification))


def _certificate(config: Config, url: str) -> x509.Certificate:
    """Amazon's signing certificate for this URL: pinned, cached, or fetched once. Failures
    are cached too (for FAILURE_SECONDS), only one fetch per URL and FETCHES in all run at
    once, each within FETCH_SECONDS: a slow or dead host costs one call a few seconds, and
    every other call at once a 503, never a queue of threads that starves other pages."""
    pinned = config.bounces.ses_certificate_file
    if pinned is not None:
        return x509.load_pem_x509_certificate(pinned.read_bytes())
    if not amazon_url(url) or not _CERTIFICATE_PATH.match(urlsplit(url).path):
        raise Refused(f"SigningCertURL {url[:200]!r} is not Amazon's")
    now = time.monotonic()
    with _lock:
        found = _certificates.get(url)
        failed_at = _failures.get(url)
        if found is None and failed_at is not None and now - failed_at < FAILURE_SECONDS:
            raise Refused("the SNS certificate could not be fetched lately", 503)
        if found is None and (url in _fetching or len(_fetching) >= FETCHES):
            raise Refused("the SNS certificate is being fetched", 503)
        if found is None:
            _fetching.add(url)
    if found is not None:
        return found
    try:
        found = _fetch_certificate(url)
    except Refused:
        with _lock:
            _failures[url] = time.monotonic()
            _trim(_failures)
        raise
    finally:
        with _lock:
            _fetching.discard(url)
    with _lock:
        _certificates[url] = found
        _trim(_certificates)
        _failures.pop(url, None)
    return found


def _fetch_certificate(url: str) -> x509.Certificate:
    deadline = time.monotonic() + FETCH_SECONDS
    data = bytearray()
    try:
        with (
            httpx.Client(timeout=FETCH_SECONDS, follow_redirects=False) as client,
            client.stream("GET", url) as answer,
        ):
            answer.raise_for_status()
            for chunk in answer.iter_bytes():
                data += chunk
                if len(data) > MAX_CERTIFICATE:
                    raise Refused("SNS certificate too large", 503)
                if time.monotonic() > deadline:
                    raise Refused("SNS certificate fetch too slow", 503)
        return x509.load_pem_x509_certificate(bytes(data))
    except (httpx.HTTPError, ValueError) as error:
        raise Refused(f"could not fetch the SNS certificate: {error}", 503) from None


def _trim(cache: dict[str, Any]) -> None:
    """Keep a cache small: URLs come from callers (only Amazon's shapes pass)."""
    while len(cache) > 100:
        cache.pop(next(iter(cache)))


def _confirm(url: str) -> None:
    """Visit the SubscribeURL (Amazon's only) in the background; when that fails the log
    says how to confirm by hand."""
    if not amazon_url(url):
        raise Refused(f"SubscribeURL {url!r} is not Amazon's", 400)

    def visit() -> None:
        try:
            with httpx.Client(timeout=10, follow_redirects=False) as client:
                client.get(url).raise_for_status()
            log.info("confirmed the SNS subscription")
        except httpx.HTTPError as error:
            log.warning("could not confirm the SNS subscription (%s): open %s", error, url)

    threading.Thread(target=visit, name="sns-confirm", daemon=True).start()


def _events(message_id: str, notification: dict[str, Any]) -> list[Event]:
    kind = notification.get("notificationType") or notification.get("eventType")
    mail = notification.get("mail") or {}
    evidence = json.dumps(
        {"source": mail.get("source"), "headers": mail.get("headers"),
         "commonHeaders": mail.get("commonHeaders")}
    ).encode()  # fmt: skip
    events = []
    if kind == "Bounce":
        bounce = notification.get("bounce") or {}
        for n, item in enumerate(bounce.get("bouncedRecipients") or []):
            events.append(Event(f"ses:{message_id}:{n}", _bounce(bounce, item), evidence))
    elif kind == "Complaint":
        complaint = notification.get("complaint") or {}
        feedback = str(complaint.get("complaintFeedbackType") or "abuse")
        if feedback == "not-spam":
            return []
        for n, item in enumerate(complaint.get("complainedRecipients") or []):
            recipient = str(item.get("emailAddress") or "").lower() or None
            report = Report("complaint", recipient, diagnostic=f"SES: {feedback}")
            events.append(Event(f"ses:{message_id}:{n}", report, evidence))
    return events[:100]


def _bounce(bounce: dict[str, Any], item: dict[str, Any]) -> Report:
    recipient = str(item.get("emailAddress") or "").lower() or None
    status = normal_status(str(item.get("status") or ""))
    words = str(item.get("diagnosticCode") or "")
    kind, subtype = bounce.get("bounceType"), str(bounce.get("bounceSubType") or "")
    shown = (words or f"SES: {kind} {subtype}")[:500]
    if kind == "Permanent" and subtype in ("Suppressed", "OnAccountSuppressionList"):
        return Report("hard", recipient, status, shown)  # SES's list: it bounced before
    if kind != "Permanent" or subtype in _SOFT_SUBTYPES:
        return Report("soft", recipient, status, shown)
    judged = severity(status, f"{words} {subtype}" if subtype != "General" else words)
    if not words and subtype == "NoEmail":
        judged = "hard"
    return Report("hard" if judged == "hard" else "soft", recipient, status, shown)
