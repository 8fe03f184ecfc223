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
from newsletter.feedback.providers.common import Call, Event, Refused, fresh

NAME = "ses"
log = logging.getLogger("newsletter.feedback.ses")

_AMAZON_HOST = re.compile(r"sns\.[a-z0-9-]{1,30}\.amazonaws\.com(?:\.cn)?\Z")
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
_lock = threading.Lock()
MAX_CERTIFICATE = 16 * 1024
# Bounce sub-types that are about the message or the mailbox's state, not the address.
_SOFT_SUBTYPES = {"MailboxFull", "MessageTooLarge", "ContentRejected", "AttachmentRejected"}


def enabled(config: Config) -> bool:
    return bool(config.bounces.ses_topic_arns)


def amazon_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(_AMAZON_HOST.match(parts.hostname or ""))


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
    try:
        message = json.loads(body)
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
    try:
        notification = json.loads(str(message["Message"]))
        assert isinstance(notification, dict)
    except (ValueError, KeyError, AssertionError):
        raise Refused("the SNS message carries no SES notification", 400) from None
    return Call(call, _events(str(message.get("MessageId", "")), notification))


def _certificate(config: Config, url: str) -> x509.Certificate:
    pinned = config.bounces.ses_certificate_file
    if pinned is not None:
        return x509.load_pem_x509_certificate(pinned.read_bytes())
    if not amazon_url(url) or not urlsplit(url).path.endswith(".pem"):
        raise Refused(f"SigningCertURL {url!r} is not Amazon's")
    with _lock:
        found = _certificates.get(url)
    if found is None:
        try:
            with httpx.Client(timeout=10, follow_redirects=False) as client:
                answer = client.get(url)
                answer.raise_for_status()
                if len(answer.content) > MAX_CERTIFICATE:
                    raise Refused("SNS certificate too large")
                found = x509.load_pem_x509_certificate(answer.content)
        except (httpx.HTTPError, ValueError) as error:
            raise Refused(f"could not fetch the SNS certificate: {error}", 503) from None
        with _lock:
            _certificates[url] = found
    return found


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
