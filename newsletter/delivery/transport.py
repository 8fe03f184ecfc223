"""Where messages go, named by one URL: `file://DIR`, `console://`, `smtp://` or `smtps://`.

- `file://DIR`: one `.eml` per message, written atomically; the embedded default.
- `console://`: the message on standard output.
- `smtp://[user@]host[:port][?tls=off]`: STARTTLS whenever the server offers it, and required
  for any host outside loopback unless `?tls=off`; certificates checked with the default SSL
  context. `smtps://` is implicit TLS (port 465). The password comes only from
  NEWSLETTER_SMTP_PASSWORD and never appears in a message; smtplib's debug output (which
  prints AUTH) is never enabled.

This is one connection, opened on first use and reused; the pooled, rate-limited sender
builds on it. SMTP replies keep their code in `TransportError.code`: smtplib raises the same
classes for 4xx and 5xx, so callers branch on the code.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import os
import re
import smtplib
import ssl
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from newsletter.atomic_files import atomic_write
from newsletter.config import environment_value
from newsletter.errors import ConfigError, TransportError

_DOT = re.compile(rb"(?m)^\.")
CONNECT_TIMEOUT = 30.0
# RFC 5321 section 4.5.3.2.6: wait up to 10 minutes for the reply to the final dot. A
# shorter timeout there is how senders end up delivering a message twice.
DATA_TIMEOUT = 600.0


# The next message's envelope (sender, recipient), which an SMTP connection may send in the
# same write as this message's final dot (RFC 2920 section 3.1).
Then = tuple[str, str] | None


class Transport(Protocol):
    """`send` returns the message's id at an HTTP API provider (their webhooks name it), or
    None. A `batched` transport takes up to `batch_size` messages in one request
    (`send_batch`: an id or a TransportError for each); the others' `send_batch` sends them
    one by one. A transport is its own context manager: `with open_transport(...) as t:`."""

    batched: bool
    batch_size: int

    def send(
        self, sender: str, recipient: str, message: bytes, then: Then = None
    ) -> str | None: ...

    def send_batch(
        self, items: list[tuple[str, str, bytes]]
    ) -> list[str | None | TransportError]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


class BaseTransport:
    """What every transport shares: one message a request, and `with` closing it."""

    batched = False
    batch_size = 1

    def send(self, sender: str, recipient: str, message: bytes, then: Then = None) -> str | None:
        raise NotImplementedError

    def send_batch(self, items: list[tuple[str, str, bytes]]) -> list[str | None | TransportError]:
        found: list[str | None | TransportError] = []
        for sender, recipient, message in items:
            try:
                found.append(self.send(sender, recipient, message))
            except TransportError as error:
                found.append(error)
        return found

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class FileTransport(BaseTransport):
    folder: Path

    def send(self, sender: str, recipient: str, message: bytes, then: Then = None) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(message).hexdigest()[:16]
        name = f"{time.time_ns()}-{digest}.eml"
        # The envelope sender, as a delivering MTA records it (a VERP address shows here).
        envelope = f"Return-Path: <{wire_address(sender)}>\r\n".encode()
        atomic_write(self.folder / name, envelope + message, private=True)


@dataclass
class ConsoleTransport(BaseTransport):
    def send(self, sender: str, recipient: str, message: bytes, then: Then = None) -> None:
        out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else None
        if out is not None:
            out.write(message + b"\r\n")
            out.flush()
        else:
            sys.stdout.write(message.decode("utf-8", "replace") + "\n")


def wire_address(email: str) -> str:
    """The address as the envelope and the headers carry it: the domain in its IDNA (ASCII)
    form, so anna@bücher.example needs no SMTPUTF8; a non-ASCII local part stays UTF-8
    (RFC 6531/6532), which only an SMTPUTF8 relay is given."""
    if email.isascii():
        return email
    local, _, domain = email.rpartition("@")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        pass
    return f"{local}@{domain}"


def _leading_dot(message: bytes) -> bool:
    """Whether a line starts with a dot (to be doubled, RFC 5321 4.5.2). Our base64 bodies
    have none, and a regex pass over 60 KB would cost more than building the message. The
    dots (a few, in the headers) are found with a one-byte search: `b"\\n." in message`
    took 40 µs over a 67 KB message, a quarter of a send's time under the GIL."""
    at = message.find(b".")
    while at != -1:
        if at == 0 or message[at - 1] == 10:  # "\n"
            return True
        at = message.find(b".", at + 1)
    return False


def _angled(address: str) -> str:
    """`<address>` for MAIL and RCPT. The addresses were validated on the way in; this is
    smtplib.quoteaddr without its header parser (7 % of a send's time under the GIL), and
    it still refuses what could end the command line early."""
    if not address.isprintable() or "<" in address or ">" in address:
        raise TransportError(f"{address!r} cannot go in an envelope", 553, "reply")
    return f"<{address}>"


def _envelope(sender: str, recipient: str, utf8: bool) -> bytes:
    """MAIL, RCPT and DATA for one write (RFC 2920: DATA ends a group)."""
    option = " SMTPUTF8" if utf8 else ""
    commands = f"MAIL FROM:{_angled(sender)}{option}\r\nRCPT TO:{_angled(recipient)}\r\nDATA\r\n"
    return commands.encode("utf-8" if utf8 else "ascii")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class SMTPTransport(BaseTransport):
    host: str
    port: int
    implicit_tls: bool = False
    tls: bool = True
    user: str | None = None
    password: str | None = None
    connect_timeout: float = CONNECT_TIMEOUT
    data_timeout: float = DATA_TIMEOUT
    _smtp: smtplib.SMTP | None = None
    # The (sender, recipient) whose MAIL, RCPT and DATA went after the last message's dot.
    _pending: tuple[str, str] | None = None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def _connect(self) -> smtplib.SMTP:
        try:
            if self.implicit_tls:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.connect_timeout, context=tls_context()
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.connect_timeout)
            smtp.ehlo()
            if not self.implicit_tls and self.tls and smtp.has_extn("starttls"):
                smtp.starttls(context=tls_context())
                smtp.ehlo()
            elif not self.implicit_tls and self.tls and not is_loopback(self.host):
                smtp.close()
                raise ConfigError(
                    f"SMTP server {self.where} does not offer STARTTLS: refusing to send in "
                    "clear text (add ?tls=off to the URL only on a trusted network)"
                )
            if self.user:
                self._login(smtp)
        except smtplib.SMTPAuthenticationError as error:
            raise ConfigError(
                f"SMTP authentication failed for {self.user} at {self.where} ({error.smtp_code}): "
                "check the user and NEWSLETTER_SMTP_PASSWORD"
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise ConfigError(
                f"SMTP server {self.where} offers no AUTH PLAIN or LOGIN (over TLS)"
            ) from None
        except ssl.SSLError as error:
            raise ConfigError(f"TLS with {self.where} failed: {error.reason}") from None
        except (OSError, smtplib.SMTPException) as error:
            code = getattr(error, "smtp_code", None)
            raise TransportError(
                f"cannot connect to {self.where}: {error}", code, "connect"
            ) from None
        if smtp.sock is not None:
            smtp.sock.settimeout(self.data_timeout)
        return smtp

    def _login(self, smtp: smtplib.SMTP) -> None:
        """One mechanism, PLAIN or LOGIN: smtplib.login tries each in turn after a failure,
        which can leave a server waiting mid-exchange and the client hanging. The exchange
        is written here rather than through smtplib.auth, which encodes the credentials as
        ASCII: a non-ASCII password crashed with an error quoting one of its characters.
        RFC 4616 (PLAIN) says UTF-8, and LOGIN servers take it."""
        offered = smtp.esmtp_features.get("auth", "").upper().split()
        user = (self.user or "").encode("utf-8")
        password = (self.password or "").encode("utf-8")
        if "PLAIN" in offered:
            code, reply = smtp.docmd("AUTH", "PLAIN " + _b64(b"\0" + user + b"\0" + password))
        elif "LOGIN" in offered:
            code, reply = smtp.docmd("AUTH", "LOGIN " + _b64(user))
            if code == 334:
                code, reply = smtp.docmd(_b64(password))
        else:
            raise smtplib.SMTPNotSupportedError("no AUTH PLAIN or LOGIN")
        if code not in (235, 503):  # 503: already authenticated
            raise smtplib.SMTPAuthenticationError(code, reply)

    def send(self, sender: str, recipient: str, message: bytes, then: Then = None) -> None:
        """MAIL, RCPT and DATA by hand rather than smtplib.sendmail, to know whether a lost
        connection happened before the final dot (the server cannot have the message) or
        after it (it may have). Where the server offers PIPELINING (RFC 2920), the three
        commands go in one write and their replies are read together, and the envelope of
        the message to follow (`then`) goes in the same write as this one's final dot, its
        replies read by the next call: one round trip a message instead of four.

        An envelope sent ahead puts nothing in doubt: until the next message and its dot
        follow, the server holds no message. If the next call is for another message (its
        reader unsubscribed meanwhile, say), the connection is closed instead, which makes
        the server drop the transaction (it may have answered DATA with 354 already)."""
        recipient = wire_address(recipient)
        if self._pending is not None and self._pending != (sender, recipient):
            self._drop()
        if self._smtp is None:
            self._smtp = self._connect()
        smtp = self._smtp
        utf8 = not (sender + recipient).isascii()
        if utf8 and not smtp.has_extn("smtputf8"):
            # The recipient's fault, not the connection's: fail this one, keep sending.
            raise TransportError(
                f"{recipient}: {self.where} does not offer SMTPUTF8, which a non-ASCII "
                "address needs (553 is this program's verdict, not the server's)",
                553,
                "reply",
            )
        try:
            if self._pending is not None:  # its commands went with the last message's dot
                self._pending = None
                mail, rcpt, data = self._envelope_replies(smtp)
            elif smtp.has_extn("pipelining"):
                smtp.send(_envelope(sender, recipient, utf8))
                mail, rcpt, data = self._envelope_replies(smtp)
            else:
                mail = smtp.mail(sender, ["SMTPUTF8"] if utf8 else [])
                rcpt = smtp.rcpt(recipient) if mail[0] == 250 else (503, b"")
                data = smtp.docmd("DATA") if rcpt[0] in (250, 251) else (503, b"")
            if data[0] == 354 and (mail[0] != 250 or rcpt[0] not in (250, 251)):
                # A server that starts DATA although the envelope failed gets an empty one.
                smtp.send(b".\r\n")
                smtp.getreply()
            if mail[0] != 250:
                self._abandon(mail[0])
                raise TransportError(
                    f"{self.where} refused the sender: {mail[0]} {_text(mail[1])}",
                    mail[0],
                    "envelope",
                )
            if rcpt[0] not in (250, 251):
                self._abandon(rcpt[0])
                raise TransportError(
                    f"{recipient} refused: {rcpt[0]} {_text(rcpt[1])}", rcpt[0], "reply"
                )
            if data[0] != 354:
                self._abandon(data[0])
                raise TransportError(
                    f"{self.where} refused DATA: {data[0]} {_text(data[1])}", data[0], "reply"
                )
            payload = _DOT.sub(b"..", message) if _leading_dot(message) else message
            if not payload.endswith(b"\r\n"):
                payload += b"\r\n"
            ahead = self._ahead(smtp, then)
            smtp.send(payload + b".\r\n" + (ahead[2] if ahead else b""))
            if ahead:
                self._pending = ahead[0], ahead[1]
        except (smtplib.SMTPServerDisconnected, OSError) as error:
            self._drop()
            raise TransportError(
                f"connection to {self.where} lost: {error}", None, "before-dot"
            ) from None
        try:
            code, reply = smtp.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as error:
            self._drop()
            raise TransportError(
                f"no reply from {self.where} after the message was sent: {error}", None, "after-dot"
            ) from None
        if code != 250:
            # The reply ends the transaction: with the next envelope on its way, an RSET
            # now would be read as the next message's first line.
            if self._pending is None or code in (421, 454):
                self._abandon(code)
            raise TransportError(
                f"{self.where} refused the message: {code} {_text(reply)}", code, "reply"
            )

    @staticmethod
    def _ahead(smtp: smtplib.SMTP, then: Then) -> tuple[str, str, bytes] | None:
        """The next message's sender, recipient and envelope commands, when they can go
        after this message's dot: the server pipelines, and takes the addresses."""
        if then is None or not smtp.has_extn("pipelining"):
            return None
        sender, recipient = then[0], wire_address(then[1])
        utf8 = not (sender + recipient).isascii()
        if utf8 and not smtp.has_extn("smtputf8"):
            return None
        try:
            return sender, recipient, _envelope(sender, recipient, utf8)
        except TransportError:  # its own send will say why
            return None

    @staticmethod
    def _envelope_replies(
        smtp: smtplib.SMTP,
    ) -> tuple[tuple[int, bytes], tuple[int, bytes], tuple[int, bytes]]:
        """The replies to MAIL, RCPT and DATA sent in one write, in order."""
        replies: list[tuple[int, bytes]] = []
        while len(replies) < 3:
            try:
                replies.append(smtp.getreply())
            except smtplib.SMTPServerDisconnected:
                # A server closing with 421 leaves the other replies unsent: the 421 stands
                # for them (smtplib has closed the connection; nothing more can be read).
                if not replies or replies[-1][0] != 421:
                    raise
                replies += [replies[-1]] * (3 - len(replies))
        return replies[0], replies[1], replies[2]

    def _abandon(self, code: int) -> None:
        """After a refusal: reset the transaction, or drop a connection the server is closing
        (421) or cannot use (454)."""
        if code in (421, 454) or self._smtp is None:
            self._drop()
            return
        try:
            self._smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        self._pending = None
        if self._smtp is not None:
            try:
                self._smtp.close()
            except OSError:
                pass
        self._smtp = None

    def close(self) -> None:
        if self._pending is not None:  # a QUIT now would be read as message text
            self._drop()
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError):
                self._smtp.close()
            self._smtp = None


def tls_context() -> ssl.SSLContext:
    """One context for every connection: loading the system's CA certificates costs about
    20 ms, which 64 connections would pay in turn (SSLContext is safe to share). It
    depends on where OpenSSL finds them, hence the key."""
    return _context_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.cache
def _context_for(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    return ssl.create_default_context()


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def display_transport(url: str) -> str:
    """The URL as it may be shown: no password, whatever was put in it."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()


def _file(url: str, parts: SplitResult, root: Path, env: Mapping[str, str]) -> Transport:
    folder = Path(unquote(parts.netloc + parts.path)).expanduser()
    return FileTransport(folder if folder.is_absolute() else root / folder)


def _console(url: str, parts: SplitResult, root: Path, env: Mapping[str, str]) -> Transport:
    return ConsoleTransport()


def _smtp(url: str, parts: SplitResult, root: Path, env: Mapping[str, str]) -> Transport:
    scheme = parts.scheme.lower()
    if not parts.hostname:
        raise ConfigError(f"transport {display_transport(url)} has no host")
    if parts.password is not None:
        raise ConfigError(
            "put the SMTP password in NEWSLETTER_SMTP_PASSWORD, not in the transport URL"
        )
    options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    unknown = set(options) - {"tls"}
    if unknown or options.get("tls", "on") not in ("on", "off"):
        raise ConfigError(f"transport {url}: the only option is ?tls=off")
    try:
        port = parts.port or (465 if scheme == "smtps" else 25)
    except ValueError:
        raise ConfigError(f"transport {url}: bad port") from None
    return SMTPTransport(
        host=parts.hostname,
        port=port,
        implicit_tls=scheme == "smtps",
        tls=options.get("tls", "on") == "on",
        user=unquote(parts.username) if parts.username else None,
        password=environment_value("NEWSLETTER_SMTP_PASSWORD", env),
    )


def _provider(url: str, parts: SplitResult, root: Path, env: Mapping[str, str]) -> Transport:
    # Only a send through a provider pays for importing its client.
    from newsletter.delivery import providers

    scheme = parts.scheme.lower()
    if scheme == "ses":
        return providers.SESTransport(url)
    if scheme == "postmark":
        return providers.PostmarkTransport(url, env)
    return providers.MailgunTransport(url, env)


Opener = Callable[[str, SplitResult, Path, Mapping[str, str]], Transport]
# Every scheme a transport URL may have: a new transport is one entry here.
SCHEMES: dict[str, Opener] = {
    "file": _file,
    "console": _console,
    "smtp": _smtp,
    "smtps": _smtp,
    "ses": _provider,
    "postmark": _provider,
    "mailgun": _provider,
}


def open_transport(url: str, root: Path, environ: Mapping[str, str] | None = None) -> Transport:
    env = os.environ if environ is None else environ
    parts = urlsplit(url)
    opener = SCHEMES.get(parts.scheme.lower())
    if opener is None:
        raise ConfigError(
            f"unknown transport {display_transport(url)}: use file://DIR, console://, "
            "smtp://host[:port], smtps://host, ses://REGION, postmark:// or mailgun://DOMAIN"
        )
    return opener(url, parts, root, env)
