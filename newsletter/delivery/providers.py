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
  stops and nothing is marked.

SES takes our message as it is (raw MIME: our DKIM signature, headers and Message-ID go as
built) and Mailgun too (its MIME endpoint); both set their own envelope sender (bounces come
back through their webhooks, which name the id). Postmark takes structured JSON: subject,
both parts, Reply-To and our List-Unsubscribe, List-ID and Message-ID headers are carried
across, and Postmark signs with its own DKIM key.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from newsletter.config import environment_value
from newsletter.errors import ConfigError, TransportError

DEFAULT_TIMEOUT = 60.0
MAX_RETRY_AFTER = 300.0
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
    return options


def _timeout(options: Mapping[str, str], scheme: str) -> float:
    try:
        value = float(options.get("timeout", DEFAULT_TIMEOUT))
    except ValueError:
        value = 0.0
    if not 0 < value <= 600:
        raise ConfigError(f"transport {scheme}://: ?timeout= takes seconds, 1 to 600")
    return value


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after", "")
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return None


def _words(response: httpx.Response, *keys: str) -> str:
    """The provider's own words about a refusal, short and on one line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in keys:
            if body.get(key):
                return " ".join(str(body[key]).split())[:500]
    return " ".join(response.text.split())[:500] or f"HTTP {response.status_code}"


@dataclass
class _HTTP:
    """What every HTTP provider shares: one client (its connections kept alive), the
    mapping of failures that happen before an answer."""

    name: str
    timeout: float
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 15.0)),
            follow_redirects=False,
        )

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.client.post(url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            raise TransportError(
                f"{self.name}: cannot connect ({error})", None, "connect"
            ) from None
        except (httpx.WriteError, httpx.WriteTimeout) as error:
            # The request did not reach them whole: nothing was accepted.
            raise TransportError(
                f"{self.name}: the request broke off ({error})", None, "before-dot"
            ) from None
        except (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError) as error:
            raise TransportError(
                f"{self.name}: no answer after the message was sent ({type(error).__name__}); "
                "it may have been accepted",
                None,
                "after-dot",
            ) from None
        except httpx.HTTPError as error:
            raise TransportError(f"{self.name}: {type(error).__name__}", None, "connect") from None

    def refused(self, response: httpx.Response, words: str, *, recipient: bool) -> TransportError:
        """The TransportError for a non-2xx answer (or ConfigError raised, for credentials
        and accounts): `recipient` says whether a 4xx was about the recipient."""
        status = response.status_code
        if status in (401, 403):
            raise ConfigError(f"{self.name} refused the request ({status}: {words}): check the "
                              "key and the account")  # fmt: skip
        if status == 429:
            error = TransportError(f"{self.name} is throttling: {words}", 421, "reply")
            error.retry_after = _retry_after(response.headers)
            return error
        if status >= 500:
            return TransportError(f"{self.name} {status}: {words}", 451, "before-dot")
        if recipient:
            return TransportError(f"{self.name} refused it: {words}", 550, "reply")
        return TransportError(f"{self.name} {status}: {words}", 451, "before-dot")

    def close(self) -> None:
        self.client.close()


class MailgunTransport:
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
        self.http = _HTTP("Mailgun", _timeout(options, "mailgun"))

    def send(self, sender: str, recipient: str, message: bytes, then: object = None) -> str:
        response = self.http.post(
            self.url,
            auth=self.auth,
            data={"to": recipient},
            files={"message": ("message.mime", message, "message/rfc822")},
        )
        if response.status_code == 200:
            found = _words(response, "id")
            return found.strip("<>")
        # Mailgun answers 400 for an address it will not take ("to parameter is not a
        # valid address"); other 4xx are about the request.
        raise self.http.refused(
            response, _words(response, "message"), recipient=response.status_code == 400
        )

    def close(self) -> None:
        self.http.close()


class PostmarkTransport:
    """`postmark://[?endpoint=URL][&stream=broadcast][&batch=50]`: the batch endpoint
    (/email/batch, up to `batch` messages a request, 500 at most) with each message's parts
    and headers as JSON, and /email for one; the server token in NEWSLETTER_POSTMARK_TOKEN.
    A batch that gets no answer leaves each of its messages in doubt."""

    # Postmark's ErrorCodes about the recipient (its API reference): an invalid or an
    # inactive address (a hard bounce or spam complaint there), a blocked domain.
    RECIPIENT_ERRORS = frozenset({300, 406, 409})

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
        self.http = _HTTP("Postmark", _timeout(options, "postmark"))

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
            answer = {}
        code = answer.get("ErrorCode") if isinstance(answer, dict) else None
        if response.status_code == 200 and code in (0, None):
            return str(answer.get("MessageID") or "")
        if code == 10:  # a bad server token, whatever the status
            raise ConfigError("Postmark refused the server token: check NEWSLETTER_POSTMARK_TOKEN")
        words = _words(response, "Message")
        about_recipient = response.status_code in (406, 422) and code in self.RECIPIENT_ERRORS
        raise self.http.refused(response, words, recipient=about_recipient)

    def send_batch(self, items: list[tuple[str, str, bytes]]) -> list[str | TransportError]:
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
        if response.status_code != 200 or not isinstance(answer, list):
            code = answer.get("ErrorCode") if isinstance(answer, dict) else None
            if code == 10:
                raise ConfigError(
                    "Postmark refused the server token: check NEWSLETTER_POSTMARK_TOKEN"
                )
            raise self.http.refused(response, _words(response, "Message"), recipient=False)
        if len(answer) != len(items):
            raise TransportError(
                "Postmark answered a batch with the wrong number of results: some may have "
                "been accepted",
                None,
                "after-dot",
            )
        results: list[str | TransportError] = []
        for result in answer:
            code = result.get("ErrorCode") if isinstance(result, dict) else None
            if code == 0:
                results.append(str(result.get("MessageID") or ""))
                continue
            words = " ".join(str(result.get("Message", "")).split())[:500]
            if code in self.RECIPIENT_ERRORS:
                results.append(TransportError(f"Postmark refused it: {words}", 550, "reply"))
            else:
                results.append(TransportError(f"Postmark {code}: {words}", 451, "before-dot"))
        return results

    def close(self) -> None:
        self.http.close()


# SES's MessageRejected about our sending identity, not the message: every message would be
# refused alike, so the send stops instead of failing each reader.
_NOT_OURS = re.compile(r"not verified|authority to send|sending paused|not authori[sz]ed", re.I)


class SESTransport:
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

    def __init__(self, url: str, env: Mapping[str, str] | None = None) -> None:
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
                retries={"max_attempts": 1, "mode": "standard"},  # the ledger retries
            ),
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
            raise TransportError(f"SES: cannot connect ({error})", None, "connect") from None
        except (aws.ReadTimeoutError, aws.ConnectionClosedError) as error:
            raise TransportError(
                f"SES: no answer after the message was sent ({type(error).__name__}); it may "
                "have been accepted",
                None,
                "after-dot",
            ) from None
        except aws.ClientError as error:
            details = error.response.get("Error", {})
            code = str(details.get("Code", ""))
            words = " ".join(str(details.get("Message", code)).split())[:500]
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400))
            if code in self.STOPPED or (code == "MessageRejected" and _NOT_OURS.search(words)):
                raise ConfigError(
                    f"SES refused the account or credentials ({code}: {words})"
                ) from None
            if code in self.THROTTLED or status == 429:
                raise TransportError(f"SES is throttling: {words}", 421, "reply") from None
            if status >= 500:
                raise TransportError(f"SES {status}: {words}", 451, "before-dot") from None
            raise TransportError(f"SES refused it ({code}): {words}", 550, "reply") from None
        return str(answer.get("MessageId", ""))

    def close(self) -> None:
        self.client.close()
