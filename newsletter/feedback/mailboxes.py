"""Where returned mail is read from, and filed once read: a Maildir folder, an mbox file,
an IMAP folder, or one message on standard input (an MTA's pipe transport).

Each source yields `Mail` one message at a time (memory stays flat on a folder of a
hundred thousand) and files a message in a folder once its reports are committed:
`processed_folder`, or `unrecognised_folder` for mail nobody could read, which waits there
for a person. Filing after the commit means a crash in between leaves a message that the
next run reads again and, by its fingerprint, recognises (policy.py).
"""

from __future__ import annotations

import imaplib
import ipaddress
import mailbox
import os
import re
import socket
import ssl
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from newsletter.config import environment_value
from newsletter.errors import ConfigError, NewsletterError, UsageError
from newsletter.feedback.parse import MAX_MESSAGE

IMAP_TIMEOUT = 60.0


@dataclass(frozen=True)
class Mail:
    source: str  # the file path, mbox key or IMAP UID: what --json calls `source`
    raw: bytes
    envelope_to: str | None = None


class Mailbox(Protocol):
    origin: str

    def messages(self) -> Iterator[Mail]: ...

    def file(self, mail: Mail, folder: str) -> None: ...

    def close(self) -> None: ...


def open_source(location: str, *, envelope_to: str | None = None) -> Mailbox:
    """`-`, `imap://...`, `imaps://...`, a Maildir folder or an mbox file."""
    if location == "-":
        return StandardInput(envelope_to)
    if location.startswith(("imap://", "imaps://")):
        return Imap(location)
    if "://" in location:
        raise UsageError(f"{location}: read a Maildir folder, an mbox file, imap(s):// or -")
    path = Path(location)
    if path.is_dir():
        if not (path / "cur").is_dir() or not (path / "new").is_dir():
            raise UsageError(f"{location} is a folder but not a Maildir (no cur/ and new/)")
        return Maildir(path)
    if path.is_file():
        return Mbox(path)
    raise UsageError(
        f"{location} does not exist: give a Maildir folder, an mbox file, an "
        "imap(s):// URL or - for standard input"
    )


class StandardInput:
    """One message on standard input: nothing to file (the MTA already has it)."""

    origin = "stdin"

    def __init__(self, envelope_to: str | None) -> None:
        self.envelope_to = envelope_to

    def messages(self) -> Iterator[Mail]:
        raw = sys.stdin.buffer.read(MAX_MESSAGE + 1)
        yield Mail("-", raw, self.envelope_to)

    def file(self, mail: Mail, folder: str) -> None:
        return None

    def close(self) -> None:
        return None


_UNIQUE = re.compile(r"(\d+)\.([^.]*)")
_MICROSECONDS = re.compile(r"M(\d{1,6})")


def _arrival(name: str) -> tuple[int, int, str]:
    """A Maildir name's place in the order of arrival. Names start with the delivery time in
    seconds, and most deliverers (Postfix, Dovecot, Python's mailbox) put the microseconds
    in the unique part as `M<digits>`, not zero-padded: sorted as text, M99999 would come
    after M100000 of the same second."""
    match = _UNIQUE.match(name)
    if match is None:
        return 0, 0, name
    micro = _MICROSECONDS.search(match.group(2))
    return int(match.group(1)), int(micro.group(1)) if micro else 0, name


class Maildir:
    """A Maildir folder (new/ and cur/); filed messages move to its Maildir++ subfolder
    `.<folder>/cur`, keeping their names and flags, by a rename on the same file system."""

    origin = "maildir"

    def __init__(self, path: Path) -> None:
        self.path = path

    def messages(self) -> Iterator[Mail]:
        for sub in ("cur", "new"):
            names = sorted(
                (name for name in os.listdir(self.path / sub) if name[:1] != "."), key=_arrival
            )
            for name in names:
                try:
                    with open(self.path / sub / name, "rb") as handle:
                        raw = handle.read(MAX_MESSAGE + 1)
                except (FileNotFoundError, IsADirectoryError):  # another reader took it
                    continue
                except OSError as error:
                    raise NewsletterError(
                        f"{self.path / sub / name}: cannot read it ({error.strerror}); "
                        "run as the mailbox's owner"
                    ) from None
                yield Mail(f"{sub}/{name}", raw)

    def file(self, mail: Mail, folder: str) -> None:
        target = self.path / f".{folder}"
        for sub in ("cur", "new", "tmp"):
            (target / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        name = mail.source.split("/", 1)[1]
        if mail.source.startswith("new/") and ":2," not in name:
            name += ":2,S"  # read mail moves to cur/ with the Seen flag (the Maildir spec)
        try:
            os.rename(self.path / mail.source, target / "cur" / name)
        except FileNotFoundError:
            pass
        except OSError as error:
            raise NewsletterError(
                f"{self.path / mail.source}: cannot move it to {target} ({error.strerror})"
            ) from None

    def close(self) -> None:
        return None


class Mbox:
    """An mbox file, locked while read (fcntl and dot-lock, as mailbox.mbox does); filed
    messages are appended to FILE.<folder> beside it and removed from it at the end."""

    origin = "mbox"

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.box = mailbox.mbox(path, create=False)
            self.box.lock()
        except (mailbox.Error, OSError) as error:
            raise NewsletterError(f"{path}: cannot lock the mbox file ({error})") from None
        self.targets: dict[str, mailbox.mbox] = {}
        # mailbox.mbox's keys are numbers at run time (typeshed calls them str)
        self.keys = {str(key): key for key in self.box.keys()}
        self.filed: list[str] = []

    def messages(self) -> Iterator[Mail]:
        for shown, key in self.keys.items():
            yield Mail(shown, self.box.get_bytes(key)[: MAX_MESSAGE + 1])

    def file(self, mail: Mail, folder: str) -> None:
        target = self.targets.get(folder)
        if target is None:
            path = self.path.with_name(f"{self.path.name}.{folder.lower()}")
            existed = path.exists()
            target = self.targets[folder] = mailbox.mbox(path, create=True)
            if not existed:
                os.chmod(path, 0o600)  # returned mail names people
            target.lock()
        target.add(self.box.get_bytes(self.keys[mail.source]))
        target.flush()
        self.filed.append(self.keys[mail.source])

    def close(self) -> None:
        for key in self.filed:
            self.box.discard(key)
        try:
            self.box.flush()
        finally:
            self.box.unlock()
            self.box.close()
            for target in self.targets.values():
                target.unlock()
                target.close()


class Imap:
    """An IMAP folder: `imaps://user@host[:port]/Folder` (TLS), or `imap://` (STARTTLS,
    required unless the server is on this machine). The password comes from
    NEWSLETTER_IMAP_PASSWORD only; a URL that carries one is refused, so it never lands in
    a crontab, a log or --json. Messages are fetched one at a time with BODY.PEEK (nothing
    is marked read by looking) and filed with MOVE, or COPY and expunge."""

    origin = "imap"

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        shown = f"{parts.scheme}://{parts.hostname or ''}{parts.path}"
        if parts.password is not None:
            raise UsageError(
                f"{shown}: do not put the password in the URL; set NEWSLETTER_IMAP_PASSWORD"
            )
        if not parts.hostname or not parts.username:
            raise UsageError(f"{url}: write imaps://user@host/Folder")
        password = environment_value("NEWSLETTER_IMAP_PASSWORD")
        if password is None:
            raise ConfigError(f"{shown}: set NEWSLETTER_IMAP_PASSWORD to the mailbox password")
        self.folder = unquote(parts.path.strip("/")) or "INBOX"
        self.where = shown
        host, tls = parts.hostname, parts.scheme == "imaps"
        port = parts.port or (993 if tls else 143)
        try:
            if tls:
                self.imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    host, port, ssl_context=ssl.create_default_context(), timeout=IMAP_TIMEOUT
                )
            else:
                self.imap = imaplib.IMAP4(host, port, timeout=IMAP_TIMEOUT)
                if "STARTTLS" in self.imap.capabilities:
                    self.imap.starttls(ssl.create_default_context())
                elif not _loopback(host):
                    raise ConfigError(
                        f"{shown} offers no STARTTLS: use imaps:// (the password would "
                        "cross the network in clear)"
                    )
            self.imap.login(unquote(parts.username), password)
            # What the server offers once logged in (MOVE, UIDPLUS) can differ from before.
            status, data = self.imap.capability()
            if status == "OK" and data and isinstance(data[-1], bytes):
                self.imap.capabilities = tuple(data[-1].decode("ascii", "replace").upper().split())
            status, _ = self.imap.select(_quoted(self.folder))
            if status != "OK":
                raise NewsletterError(f"{shown}: no folder {self.folder!r}")
        except (OSError, imaplib.IMAP4.error, ssl.SSLError) as error:
            raise NewsletterError(f"{shown}: {_imap_error(error)}") from None
        self.created: set[str] = set()
        self.expunge = False

    def messages(self) -> Iterator[Mail]:
        try:
            status, data = self.imap.uid("SEARCH", "ALL")
            uids = data[0].split() if status == "OK" and data and data[0] else []
            for uid in uids:
                status, sized = self.imap.uid("FETCH", uid, "(RFC822.SIZE)")
                size = _size(sized)
                if size is not None and size > MAX_MESSAGE:
                    yield Mail(uid.decode(), b"", None)  # too big to be a bounce: kept aside
                    continue
                status, fetched = self.imap.uid("FETCH", uid, "(BODY.PEEK[])")
                raw = next((item[1] for item in fetched or [] if isinstance(item, tuple)), b"")
                yield Mail(uid.decode(), bytes(raw))
        except (OSError, imaplib.IMAP4.error) as error:
            raise NewsletterError(f"{self.where}: {_imap_error(error)}") from None

    def file(self, mail: Mail, folder: str) -> None:
        try:
            if folder not in self.created:
                self.imap.create(_quoted(folder))  # an existing folder answers NO: fine
                self.created.add(folder)
            if "MOVE" in self.imap.capabilities:
                status, _ = self.imap.uid("MOVE", mail.source, _quoted(folder))
            else:
                status, _ = self.imap.uid("COPY", mail.source, _quoted(folder))
                if status == "OK":
                    self.imap.uid("STORE", mail.source, "+FLAGS.SILENT", r"(\Deleted)")
                    self.expunge = True
            if status != "OK":
                raise NewsletterError(f"{self.where}: could not move UID {mail.source}")
        except (OSError, imaplib.IMAP4.error) as error:
            raise NewsletterError(f"{self.where}: {_imap_error(error)}") from None

    def close(self) -> None:
        try:
            if self.expunge:
                self.imap.expunge()
            self.imap.logout()
        except (OSError, imaplib.IMAP4.error):
            pass


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _size(data: list[object] | None) -> int | None:
    for item in data or []:
        text = item.decode("ascii", "replace") if isinstance(item, bytes) else str(item)
        match = re.search(r"RFC822\.SIZE (\d+)", text)
        if match:
            return int(match.group(1))
    return None


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def _imap_error(error: BaseException) -> str:
    text = str(error).strip()
    if isinstance(error, ConnectionRefusedError):
        return "connection refused: is the IMAP server running, and the port right?"
    if isinstance(error, socket.timeout):
        return f"no answer within {IMAP_TIMEOUT:.0f} s"
    if "AUTHENTICATIONFAILED" in text.upper() or "LOGIN" in text.upper():
        return "login refused: check the user in the URL and NEWSLETTER_IMAP_PASSWORD"
    return text[:200] or type(error).__name__
