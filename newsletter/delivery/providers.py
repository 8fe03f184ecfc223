"""Providers' HTTP APIs as transports: `ses://REGION`, `postmark://`, `mailgun://DOMAIN`.

Each takes `?endpoint=URL` (a local server in tests, a regional or private endpoint in
production) and `?timeout=SECONDS` (the answer's, default 60); secrets come from the
environment only (NEWSLETTER_POSTMARK_TOKEN, NEWSLETTER_MAILGUN_API_KEY; for SES the
standard AWS chain: variables, shared files, an instance's or a task's IAM role), never from
the URL, and never reach a log or an error.

What a provider answers maps onto the ledger as an SMTP reply does (connections.classify):

- accepted: `send` returns the provider's id; the row is sent, the id kept;
- refused for this recipient (an invalid or inactive address, a rejected message): 550,
  the row failed with the provider's words;
- 429 or a throttling error: 421 (and `retry_after` from Retry-After), the row queued again
  and retried in this run after the wait;
- 5xx: 451 before the message was taken, the row deferred;
- no connection: the row queued again;
- the request went and no answer came (a timeout, a connection closed after it): the row
  unknown, in doubt, never sent twice blindly;
- credentials or the account refused (401, 403, a paused account): ConfigError, the send
  stops and nothing is marked;
- anything else that is not about this one reader (a malformed request, a redirect, a
  Mailgun 400 about a parameter, an SES BadRequestException that names no recipient): the
  same answer would come for every reader, so the send pauses (ProviderPaused, exit 75),
  names the cause, and marks nobody.

A provider is hostile until proven otherwise: no client-side retry of a send (a resend
after a timeout would be a second copy while the ledger says "in doubt"); a total deadline
per request (`?timeout=`) and at most MAX_ANSWER bytes read of its answer, whose words are
stored without control characters and without our own secrets (a reflecting endpoint
would otherwise put the server token into `last_error`); `?endpoint=http://` only on
loopback. A provider's words are never read for "5.1.x": only an SMTP reply means that.

SES takes our message as it is (raw MIME: our DKIM signature, headers and Message-ID go as
built) and Mailgun too (its MIME endpoint); both set their own envelope sender (bounces come
back through their webhooks, which name the id). Postmark takes structured JSON: subject,
both parts, Reply-To and our List-Unsubscribe, List-ID and Message-ID headers are carried
across, and Postmark signs with its own DKIM key.
"""

from __future__ import annotations

import base64
import email
import email.policy
import email.utils
import ipaddress
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from newsletter.config import environment_value
from newsletter.delivery.transport import BaseTransport
from newsletter.errors import ConfigError, ProviderPaused, Stage, TransportError
from newsletter.untrusted import strip_controls

DEFAULT_TIMEOUT = 60.0
MAX_RETRY_AFTER = 300.0
# What is read of an answer: an id and a few words are a few hundred bytes; a batch of 500
# results some 100 KB.
MAX_ANSWER = 1024 * 1024
MAILGUN = {"us": "https://api.mailgun.net", "eu": "https://api.eu.mailgun.net"}
POSTMARK = "https://api.postmarkapp.com"
# Headers Postmark is given from our message (it builds the rest itself).
POSTMARK_HEADERS = (
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-ID",
    "Message-ID",
    "Feedback-ID",
    "Auto-Submitted",
    "Precedence",
)


def _options(url: str, allowed: set[str]) -> dict[str, str]:
    parts = urlsplit(url)
    if parts.password is not None or parts.username is not None:
        raise ConfigError(
            f"transport {parts.scheme}://: put the key in the environment, not in the URL"
        )
    options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    unknown = set(options) - allowed
    if unknown:
        raise ConfigError(
            f"transport {parts.scheme}://: unknown option {sorted(unknown)[0]!r}; "
            f"use {', '.join(sorted(allowed))}"
        )
    if "endpoint" in options:
        _check_endpoint(options["endpoint"], parts.scheme)
    return options


def _check_endpoint(endpoint: str, scheme: str) -> None:
    """https anywhere; plain http only to this machine (a local test server, a proxy on
    loopback): the key and every reader's message would otherwise cross the network in
    clear."""
    parts = urlsplit(endpoint)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _loopback(parts.hostname):
        return
    raise ConfigError(
        f"transport {scheme}://: ?endpoint= must be an https:// URL (http:// only to "
        f"127.0.0.1 or localhost), not {endpoint!r}"
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _clean(text: str, secrets: tuple[str, ...] = ()) -> str:
    """A provider's words as we keep them: one line, no control or bidi character, no
    secret of ours (as sent, or base64-encoded as Basic credentials are), 500 characters."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return " ".join(strip_controls(text).split())[:500]


def _secret_forms(*secrets: str) -> tuple[str, ...]:
    """Each secret, and the base64 a Basic Authorization header carries it in."""
    forms: list[str] = []
    for secret in secrets:
        if secret:
            forms.append(base64.b64encode(f"api:{secret}".encode()).decode())
            forms.append(secret)
    return tuple(forms)


def _timeout(options: Mapping[str, str], scheme: str) -> float:
    try:
        value = float(options.get("timeout", DEFAULT_TIMEOUT))
    except ValueError:
        value = 0.0
    if not 0 < value <= 600:
        raise ConfigError(f"transport {scheme}://: ?timeout= takes seconds, 1 to 600")
    return value


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after", "")
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return None


@dataclass
class Answer:
    """What was read of a provider's answer: its status, headers and at most MAX_ANSWER
    bytes of its body, read within the request's deadline."""

    status_code: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


class _Overdue(Exception):
    """The answer did not come whole within the request's deadline, or was too large."""


@dataclass
class _HTTP:
    """What every HTTP provider shares: one client (its connections kept alive), the
    mapping of failures that happen before an answer, the deadline and the cap on what is
    read, and the secrets its stored words must never hold."""

    name: str
    timeout: float
    secrets: tuple[str, ...] = ()
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 15.0)),
            follow_redirects=False,
        )

    def words(self, answer: Answer, *keys: str) -> str:
        """The provider's own words about a refusal, clean (see _clean)."""
        try:
            body = answer.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            for key in keys:
                if body.get(key):
                    return _clean(str(body[key]), self.secrets)
        return _clean(answer.text, self.secrets) or f"HTTP {answer.status_code}"

    def error(self, message: str, code: int | None, stage: Stage) -> TransportError:
        """A TransportError about a provider's answer: its words are not an SMTP reply."""
        error = TransportError(_clean(message, self.secrets), code, stage)
        error.smtp = False
        return error

    def post(self, url: str, **kwargs: Any) -> Answer:
        """One request, never retried here; its answer read whole within `timeout` seconds
        in all (httpx's own timeout is per read: a body trickled a byte at a time would
        hold the send for ever) and up to MAX_ANSWER bytes."""
        deadline = time.monotonic() + self.timeout
        try:
            with self.client.stream("POST", url, **kwargs) as response:
                body = bytearray()
                # Decoded as it comes (a provider may gzip its answer), so the cap bounds
                # what a compressed answer inflates to as well.
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER or time.monotonic() > deadline:
                        raise _Overdue
                return Answer(response.status_code, response.headers, bytes(body))
        except _Overdue:
            raise self.error(
                f"{self.name}: the answer did not come whole within {self.timeout:g} s or "
                f"passed {MAX_ANSWER // 1024} KB; the message may have been accepted",
                None,
                "after-dot",
            ) from None
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            raise self.error(f"{self.name}: cannot connect ({error})", None, "connect") from None
        except (httpx.WriteError, httpx.WriteTimeout) as error:
            # The request did not reach them whole: nothing was accepted.
            raise self.error(
                f"{self.name}: the request broke off ({error})", None, "before-dot"
            ) from None
        except (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError) as error:
            raise self.error(
                f"{self.name}: no answer after the message was sent ({type(error).__name__}); "
                "it may have been accepted",
                None,
                "after-dot",
            ) from None
        except httpx.HTTPError as error:
            raise self.error(f"{self.name}: {type(error).__name__}", None, "connect") from None

    def refused(self, response: Answer, words: str, *, recipient: bool) -> TransportError:
        """The TransportError for a non-2xx answer (or ConfigError raised, for credentials
        and accounts; ProviderPaused, for an answer about the request rather than this
        reader): `recipient` says whether a 4xx was about the recipient."""
        status = response.status_code
        if status in (401, 403):
            raise ConfigError(f"{self.name} refused the request ({status}: {words}): check the "
                              "key and the account")  # fmt: skip
        if status == 429:
            error = self.error(f"{self.name} is throttling: {words}", 421, "reply")
            error.retry_after = _retry_after(response.headers)
            return error
        if status >= 500:
            return self.error(f"{self.name} {status}: {words}", 451, "before-dot")
        if recipient:
            return self.error(f"{self.name} refused it: {words}", 550, "reply")
        raise ProviderPaused(
            f"{self.name} answered {status} about the request, not a reader ({words}): the "
            "send is paused and nobody was marked; fix the cause, then send again"
        )

    def close(self) -> None:
        self.client.close()


class MailgunTransport(BaseTransport):
    """`mailgun://DOMAIN[?region=eu][&endpoint=URL]`: the MIME endpoint, our message as
    built; the key in NEWSLETTER_MAILGUN_API_KEY."""

    def __init__(self, url: str, env: Mapping[str, str] | None = None) -> None:
        parts = urlsplit(url)
        options = _options(url, {"region", "endpoint", "timeout"})
        if not parts.hostname:
            raise ConfigError("transport mailgun://DOMAIN: name the sending domain")
        region = options.get("region", "us")
        if region not in MAILGUN:
            raise ConfigError(f"transport mailgun://: region is us or eu, not {region!r}")
        key = environment_value("NEWSLETTER_MAILGUN_API_KEY", env)
        if key is None:
            raise ConfigError("mailgun://: set NEWSLETTER_MAILGUN_API_KEY to the API key")
        base = options.get("endpoint", MAILGUN[region]).rstrip("/")
        self.url = f"{base}/v3/{parts.hostname}/messages.mime"
        self.auth = ("api", key)
        self.http = _HTTP("Mailgun", _timeout(options, "mailgun"), _secret_forms(key))

    def send(self, sender: str, recipient: str, message: bytes, then: object = None) -> str:
        response = self.http.post(
            self.url,
            auth=self.auth,
            data={"to": recipient},
            files={"message": ("message.mime", message, "message/rfc822")},
        )
        if response.status_code == 200:
            try:
                body = response.json()
            except ValueError:
                body = None
            found = body.get("id") if isinstance(body, dict) else None
            if not isinstance(found, str) or not found:
                # Accepted, by its status, but with no id we can keep: in doubt.
                raise self.http.error(
                    "Mailgun answered 200 without a message id: it may have been accepted",
                    None,
                    "after-dot",
                )
            return _clean(found).strip("<>")
        words = self.http.words(response, "message")
        about = response.status_code == 400 and _about_recipient(words, recipient)
        raise self.http.refused(response, words, recipient=about)

    def close(self) -> None:
        self.http.close()


# Mailgun's 400 about the address itself ("'to' parameter is not a valid address"); any
# other 400 (a missing or malformed parameter, the message) is about the request.
_TO_PARAMETER = re.compile(r"\bto\b['\"]? parameter|recipient address", re.I)


def _about_recipient(words: str, recipient: str) -> bool:
    """Whether a refusal's words are about this recipient: they name the address, or the
    provider's own phrase for a bad `to`."""
    return recipient.lower() in words.lower() or bool(_TO_PARAMETER.search(words))


class PostmarkTransport(BaseTransport):
    """`postmark://[?endpoint=URL][&stream=broadcast][&batch=50]`: the batch endpoint
    (/email/batch, up to `batch` messages a request, 500 at most) with each message's parts
    and headers as JSON, and /email for one; the server token in NEWSLETTER_POSTMARK_TOKEN.
    A batch that gets no answer leaves each of its messages in doubt."""

    # Postmark's ErrorCodes about the recipient (its API reference): an invalid or an
    # inactive address (a hard bounce or spam complaint there), a blocked domain.
    RECIPIENT_ERRORS = frozenset({300, 406, 409})
    batched = True

    def __init__(self, url: str, env: Mapping[str, str] | None = None) -> None:
        options = _options(url, {"endpoint", "stream", "timeout", "batch"})
        try:
            self.batch_size = int(options.get("batch", "50"))
        except ValueError:
            self.batch_size = 0
        if not 1 <= self.batch_size <= 500:
            raise ConfigError("transport postmark://: ?batch= takes 1 to 500 messages")
        token = environment_value("NEWSLETTER_POSTMARK_TOKEN", env)
        if token is None:
            raise ConfigError("postmark://: set NEWSLETTER_POSTMARK_TOKEN to the server token")
        self.url = options.get("endpoint", POSTMARK).rstrip("/") + "/email"  # and /batch
        self.stream = options.get("stream", "broadcast")
        self.headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "X-Postmark-Server-Token": token,
        }
        self.http = _HTTP("Postmark", _timeout(options, "postmark"), _secret_forms(token))

    def payload(self, recipient: str, message: bytes) -> dict[str, Any]:
        parsed = email.message_from_bytes(message, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        html = parsed.get_body(("html",))
        text = parsed.get_body(("plain",))
        to = str(parsed.get("To") or recipient)
        body: dict[str, Any] = {
            "From": str(parsed.get("From", "")),
            "To": to if recipient in to else recipient,
            "Subject": str(parsed.get("Subject", "")),
            "MessageStream": self.stream,
            "Headers": [
                {"Name": name, "Value": str(parsed[name])}
                for name in POSTMARK_HEADERS
                if parsed.get(name) is not None
            ],
        }
        if html is not None:
            body["HtmlBody"] = html.get_content()
        if text is not None:
            body["TextBody"] = text.get_content()
        if parsed.get("Reply-To"):
            body["ReplyTo"] = str(parsed["Reply-To"])
        return body

    def send(self, sender: str, recipient: str, message: bytes, then: object = None) -> str:
        response = self.http.post(
            self.url, headers=self.headers, content=json.dumps(self.payload(recipient, message))
        )
        try:
            answer = response.json()
        except ValueError:
            answer = None
        code = answer.get("ErrorCode") if isinstance(answer, dict) else None
        if response.status_code == 200:
            if code == 0 and isinstance(answer, dict):
                return _clean(str(answer.get("MessageID") or ""))
            if not isinstance(code, int) or isinstance(code, bool):
                # A 200 that is not Postmark's answer (not JSON, no ErrorCode): it may have
                # been accepted; a retry could be a second copy.
                raise self.http.error(
                    "Postmark answered 200 without its result: it may have been accepted",
                    None,
                    "after-dot",
                )
        if code == 10:  # a bad server token, whatever the status
            raise ConfigError("Postmark refused the server token: check NEWSLETTER_POSTMARK_TOKEN")
        words = self.http.words(response, "Message")
        about_recipient = response.status_code in (200, 406, 422) and code in self.RECIPIENT_ERRORS
        if response.status_code == 200:
            if about_recipient:
                raise self.http.error(f"Postmark refused it: {words}", 550, "reply")
            raise self.http.error(f"Postmark {code}: {words}", 451, "before-dot")
        raise self.http.refused(response, words, recipient=about_recipient)

    def send_batch(self, items: list[tuple[str, str, bytes]]) -> list[str | None | TransportError]:
        """Many messages, one request: each one's id, or the TransportError for it alone
        (an inactive recipient fails that message, not the batch)."""
        payload = [self.payload(recipient, message) for _, recipient, message in items]
        response = self.http.post(
            self.url + "/batch", headers=self.headers, content=json.dumps(payload)
        )
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code == 200 and not isinstance(answer, list):
            raise self.http.error(
                "Postmark answered a batch with 200 but no results: some may have been accepted",
                None,
                "after-dot",
            )
        if response.status_code != 200 or not isinstance(answer, list):
            code = answer.get("ErrorCode") if isinstance(answer, dict) else None
            if code == 10:
                raise ConfigError(
                    "Postmark refused the server token: check NEWSLETTER_POSTMARK_TOKEN"
                )
            raise self.http.refused(response, self.http.words(response, "Message"), recipient=False)
        return [self._result(result) for result in self._matched(items, answer)]

    def _matched(self, items: list[tuple[str, str, bytes]], answer: list[Any]) -> list[Any]:
        """Each item's result, by its recipient (Postmark's `To`), never by position
        alone: a reordered answer would fail or mark the wrong reader. A result that names
        no `To` is taken at its position only when the answer has one entry per item; an
        item no result is found for is in doubt (None)."""
        wanted = [_bare(recipient) for _, recipient, _ in items]
        named = [_bare(str(r.get("To", ""))) if isinstance(r, dict) else "" for r in answer]
        by_recipient: dict[str, Any] = {}
        for to, result in zip(named, answer, strict=True):
            if to:
                by_recipient.setdefault(to, result)
        positional = len(answer) == len(items)
        return [
            by_recipient.get(address)
            if address in by_recipient
            else (answer[n] if positional and not named[n] else None)
            for n, address in enumerate(wanted)
        ]

    def _result(self, result: Any) -> str | TransportError:
        if not isinstance(result, dict) or not isinstance(result.get("ErrorCode"), int):
            return self.http.error(
                "Postmark gave no result for this message in the batch's answer: it may have "
                "been accepted",
                None,
                "after-dot",
            )
        code = result["ErrorCode"]
        if code == 0:
            return _clean(str(result.get("MessageID") or ""))
        words = _clean(str(result.get("Message", "")), self.http.secrets)
        if code in self.RECIPIENT_ERRORS:
            return self.http.error(f"Postmark refused it: {words}", 550, "reply")
        return self.http.error(f"Postmark {code}: {words}", 451, "before-dot")

    def close(self) -> None:
        self.http.close()


def _bare(address: str) -> str:
    return email.utils.parseaddr(address)[1].lower()


# SES's throttling words, whatever the code it came with.
_SES_RATE = re.compile(r"maximum sending rate exceeded|rate exceeded|throttl", re.I)

# SES's MessageRejected about our sending identity, not the message: every message would be
# refused alike, so the send stops instead of failing each reader.
_NOT_OURS = re.compile(r"not verified|authority to send|sending paused|not authori[sz]ed", re.I)


class SESTransport(BaseTransport):
    """`ses://REGION[?endpoint=URL]`: Amazon SES v2 SendEmail with our raw message, through
    boto3 and its standard credential chain."""

    THROTTLED = frozenset(
        {"TooManyRequestsException", "Throttling", "ThrottlingException", "LimitExceededException"}
    )
    STOPPED = frozenset(
        {
            "AccountSuspendedException",
            "SendingPausedException",
            "MailFromDomainNotVerifiedException",
            "AccessDeniedException",
            "UnrecognizedClientException",
            "InvalidClientTokenId",
            "SignatureDoesNotMatch",
        }
    )

    def __init__(self, url: str) -> None:
        import boto3  # type: ignore[import-untyped]  # only a send through SES pays the import
        from botocore.config import Config as BotoConfig  # type: ignore[import-untyped]

        parts = urlsplit(url)
        options = _options(url, {"endpoint", "timeout"})
        region = parts.hostname
        if not region:
            raise ConfigError("transport ses://REGION: name the region, e.g. ses://eu-west-1")
        timeout = _timeout(options, "ses")
        self.client = boto3.client(
            "sesv2",
            region_name=region,
            endpoint_url=options.get("endpoint"),
            config=BotoConfig(
                connect_timeout=min(timeout, 15.0),
                read_timeout=timeout,
                # One attempt in all: botocore's `max_attempts` counts retries, so 1 would
                # resend a message after a timeout, a dropped connection or a 500 while the
                # ledger holds it in doubt. The ledger retries.
                retries={"total_max_attempts": 1, "mode": "standard"},
            ),
        )
        credentials = self.client._request_signer._credentials  # noqa: SLF001
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
        self.secrets: tuple[str, ...] = tuple(
            value
            for value in (
                getattr(frozen, "secret_key", None),
                getattr(frozen, "token", None),
            )
            if value
        )

    def send(self, sender: str, recipient: str, message: bytes, then: object = None) -> str:
        from botocore import exceptions as aws  # type: ignore[import-untyped]

        try:
            answer = self.client.send_email(
                Destination={"ToAddresses": [recipient]},
                Content={"Raw": {"Data": message}},
            )
        except aws.NoCredentialsError:
            raise ConfigError(
                "ses://: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "a profile in ~/.aws, or run with an IAM role"
            ) from None
        except (aws.EndpointConnectionError, aws.ConnectTimeoutError) as error:
            raise self._error(f"SES: cannot connect ({error})", None, "connect") from None
        except (aws.ReadTimeoutError, aws.ConnectionClosedError) as error:
            raise self._error(
                f"SES: no answer after the message was sent ({type(error).__name__}); it may "
                "have been accepted",
                None,
                "after-dot",
            ) from None
        except aws.ClientError as error:
            raise self._refused(error, recipient) from None
        found = answer.get("MessageId") if isinstance(answer, dict) else None
        if not isinstance(found, str) or not found:
            raise self._error(
                "SES answered without a MessageId: it may have been accepted", None, "after-dot"
            )
        return _clean(found)

    def _error(self, message: str, code: int | None, stage: Stage) -> TransportError:
        error = TransportError(_clean(message, self.secrets), code, stage)
        error.smtp = False
        return error

    def _refused(self, error: Any, recipient: str) -> TransportError:
        """An SES error answer: a row fails only for what is about this reader (a rejected
        message or a bad request that names the address); throttling waits; 5xx defers; the
        account, the credentials or the identity stop the send; anything else (a
        BadRequestException about a parameter, a redirect, an unknown code) would be the
        same for every reader and pauses it."""
        details = error.response.get("Error", {})
        code = _clean(str(details.get("Code", "")))
        words = _clean(str(details.get("Message", code)), self.secrets)
        try:
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400))
        except (TypeError, ValueError):
            status = 400
        if code in self.STOPPED or (code == "MessageRejected" and _NOT_OURS.search(words)):
            raise ConfigError(f"SES refused the account or credentials ({code}: {words})")
        if code in self.THROTTLED or status == 429 or _SES_RATE.search(words):
            return self._error(f"SES is throttling: {words}", 421, "reply")
        if status >= 500:
            return self._error(f"SES {status}: {words}", 451, "before-dot")
        if 400 <= status < 500 and (
            code == "MessageRejected"
            or (code == "BadRequestException" and _about_recipient(words, recipient))
        ):
            return self._error(f"SES refused it ({code}): {words}", 550, "reply")
        raise ProviderPaused(
            f"SES answered {status} {code or 'with no code'} about the request, not a reader "
            f"({words}): the send is paused and nobody was marked; fix the cause, then send "
            "again"
        )

    def close(self) -> None:
        self.client.close()
