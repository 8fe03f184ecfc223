"""Where returned mail is read from, and filed once read: a Maildir folder, an mbox file,
an IMAP folder, or one message on standard input (an MTA's pipe transport).

Each source yields `Mail` one message at a time (memory stays flat on a folder of a
hundred thousand) and files a message in a folder once its reports are committed:
`processed_folder`, or `unrecognised_folder` for mail nobody could read, which waits there
for a person. Filing after the commit means a crash in between leaves a message that the
next run reads again and, by its fingerprint, recognises (policy.py).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import imaplib
import io
import ipaddress
import mailbox
import os
import re
import socket
import ssl
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast
from urllib.parse import unquote, urlsplit

from newsletter.config import environment_value
from newsletter.errors import ConfigError, NewsletterError, UsageError
from newsletter.feedback.parse import MAX_MESSAGE

IMAP_TIMEOUT = 60.0  # one read
IMAP_DEADLINE = 120.0  # one command, however the server drips its answer
MAX_LINE = 1_000_000  # imaplib's own bound: a SEARCH of a big folder is one line


@dataclass(frozen=True)
class Mail:
    source: str  # the file path, mbox key or IMAP UID: what --json calls `source`
    raw: bytes
    envelope_to: str | None = None
    # Why this entry was not read (a symbolic link, a FIFO, a file we may not open, one
    # too large): it is set aside for a person with this reason, and the run goes on.
    refused: str | None = None


class Mailbox(Protocol):
    origin: str

    def messages(self) -> Iterator[Mail]: ...

    def file(self, mail: Mail, folder: str) -> str | None:
        """Move a message to `folder`; a one-line reason when it could not be moved (it
        stays, and the next run recognises it)."""
        ...

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

    def file(self, mail: Mail, folder: str) -> str | None:
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
            try:
                listed = os.listdir(self.path / sub)
            except OSError as error:
                raise NewsletterError(
                    f"{self.path / sub}: cannot list it ({error.strerror}); "
                    "run as the mailbox's owner"
                ) from None
            for name in sorted((n for n in listed if n[:1] != "."), key=_arrival):
                mail = _read_entry(self.path / sub / name, f"{sub}/{name}")
                if mail is not None:
                    yield mail

    def file(self, mail: Mail, folder: str) -> str | None:
        target = self.path / f".{folder}"
        name = mail.source.split("/", 1)[1]
        if mail.source.startswith("new/") and ":2," not in name:
            name += ":2,S"  # read mail moves to cur/ with the Seen flag (the Maildir spec)
        if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME:  # a hostile name
            digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()
            name = f"{digest[:40]}.renamed:2,S"
        try:
            for sub in ("cur", "new", "tmp"):
                (target / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
            # The entry itself moves, never what a link points to.
            os.rename(self.path / mail.source, target / "cur" / name)
        except FileNotFoundError:
            return None  # another reader took it
        except OSError as error:
            return (
                f"{self.path / mail.source}: cannot move it to {target} ({error.strerror}); "
                "left in place"
            )
        return None

    def close(self) -> None:
        return None


MAX_NAME = 255  # bytes of a file name on Linux's file systems


def _read_entry(path: Path, source: str) -> Mail | None:
    """One Maildir entry, read only if it is a regular file and no link: a symbolic link
    in new/ could point at the key file, a FIFO would block the read forever. Whatever it
    is, the run goes on; None when another reader took it meanwhile."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        handle = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            return Mail(source, b"", refused="a symbolic link: not followed, set aside")
        return Mail(source, b"", refused=f"cannot be read ({error.strerror}): set aside")
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            return Mail(source, b"", refused="not a regular file: not read, set aside")
        os.set_blocking(handle, True)
        with os.fdopen(handle, "rb", closefd=False) as stream:
            raw = stream.read(MAX_MESSAGE + 1)
    except OSError as error:
        return Mail(source, b"", refused=f"cannot be read ({error.strerror}): set aside")
    finally:
        os.close(handle)
    if len(raw) > MAX_MESSAGE:
        return Mail(source, b"", refused=f"larger than {MAX_MESSAGE // 1_000_000} MB: set aside")
    return Mail(source, raw)


class _BoundedMbox(mailbox.mbox):
    """mailbox.mbox with every read bounded. The standard table of contents reads the file
    a line at a time, and one line can be the whole file (a 300 MB message with no line
    break); here the file is scanned in chunks for lines that start with `From `, and a
    message is read up to MAX_MESSAGE + 1 bytes, the rest left on disk."""

    def _generate_toc(self) -> None:
        starts: set[int] = set()
        handle = self._file  # type: ignore[attr-defined]
        handle.seek(0)
        offset, tail = 0, b"\n"  # the bytes before this chunk, for a line split across two
        while chunk := handle.read(_CHUNK):
            data = tail + chunk
            base = offset - len(tail)
            starts.update(base + found.start() + 1 for found in _FROM_LINE.finditer(data))
            tail, offset = data[-5:], offset + len(chunk)
        ordered = sorted(starts)
        stops = []
        for start, end in zip(ordered, [*ordered[1:], offset][: len(ordered)], strict=True):
            handle.seek(max(start, end - 2))
            stops.append(end - 1 if handle.read(2) == b"\n\n" else end)  # the blank line
        self._toc = dict(enumerate(zip(ordered, stops, strict=True)))
        self._next_key = len(self._toc)
        self._file_length = offset

    def get_bytes(self, key: str, from_: bool = False) -> bytes:
        start, stop = self._lookup(key)  # type: ignore[attr-defined]
        handle = self._file  # type: ignore[attr-defined]
        handle.seek(start)
        while not from_:  # the From_ line, however long, in bounded reads
            line = handle.readline(4096)
            if not line or line.endswith(b"\n"):
                break
        size = min(stop - handle.tell(), MAX_MESSAGE + 1)
        return bytes(handle.read(max(size, 0)))

    def copy_to(self, key: str, target: BinaryIO) -> None:
        """The message, From_ line included, appended to `target` in chunks."""
        start, stop = self._lookup(key)  # type: ignore[attr-defined]
        handle = self._file  # type: ignore[attr-defined]
        handle.seek(start)
        while start < stop:
            chunk = handle.read(min(_CHUNK, stop - start))
            if not chunk:
                break
            target.write(chunk)
            start += len(chunk)
        target.write(b"\n")


_CHUNK = 1 << 20
_FROM_LINE = re.compile(rb"\nFrom ")


class Mbox:
    """An mbox file, locked while read (fcntl and dot-lock, as mailbox.mbox does); filed
    messages are appended to FILE.<folder> beside it (locked, 0600) and removed from it at
    the end. Memory stays within a message's cap whatever the file holds."""

    origin = "mbox"

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.box = _BoundedMbox(path, create=False)
            self.box.lock()
        except (mailbox.Error, OSError) as error:
            raise NewsletterError(f"{path}: cannot lock the mbox file ({error})") from None
        self.targets: dict[str, BinaryIO] = {}
        # mailbox.mbox's keys are numbers at run time (typeshed calls them str)
        self.keys = {str(key): key for key in self.box.keys()}
        self.filed: list[str] = []
        if not self.keys and path.stat().st_size:
            self.box.unlock()
            raise UsageError(
                f"{path}: not an mbox file (no line starts with 'From '); for one message "
                f"saved as a file, use: newsletter bounces process - < {path}"
            )

    def messages(self) -> Iterator[Mail]:
        for shown, key in self.keys.items():
            raw = self.box.get_bytes(key)
            if len(raw) > MAX_MESSAGE:
                limit = MAX_MESSAGE // 1_000_000
                yield Mail(shown, b"", refused=f"larger than {limit} MB: set aside")
            else:
                yield Mail(shown, raw)

    def file(self, mail: Mail, folder: str) -> str | None:
        target = self.targets.get(folder)
        if target is None:
            path = self.path.with_name(f"{self.path.name}.{folder.lower()}")
            try:
                # returned mail names people: created 0600
                descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                target = self.targets[folder] = os.fdopen(descriptor, "ab")
                fcntl.lockf(target, fcntl.LOCK_EX)
            except OSError as error:
                return f"{path}: cannot write it ({error.strerror}); {mail.source} left in place"
        try:
            self.box.copy_to(self.keys[mail.source], target)
            target.flush()
        except OSError as error:
            return f"{self.path}.{folder.lower()}: cannot write it ({error.strerror})"
        self.filed.append(self.keys[mail.source])
        return None

    def close(self) -> None:
        for key in self.filed:
            self.box.discard(key)
        try:
            self.box.flush()
        finally:
            self.box.unlock()
            self.box.close()
            for target in self.targets.values():
                target.close()


NOOP_SECONDS = 30.0  # how often a server without IDLE is asked whether mail came


class _Bounded(imaplib.IMAP4):
    """imaplib with the server's word kept from driving time and memory: each command
    (and the greeting) has a total deadline however slowly the answer drips, and a literal
    announced as 10^12 bytes is read in chunks, keeping MAX_MESSAGE + 1 of them (the rest
    read past, within the deadline)."""

    _deadline = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._deadline = time.monotonic() + IMAP_DEADLINE
        super().__init__(*args, **kwargs)

    def _command(self, name: str, *args: Any) -> Any:
        self._deadline = time.monotonic() + IMAP_DEADLINE
        return super()._command(name, *args)  # type: ignore[misc]

    def _arm(self) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no complete answer within {IMAP_DEADLINE:.0f} s")
        self.sock.settimeout(min(remaining, IMAP_TIMEOUT))

    @property
    def _stream(self) -> io.BufferedReader:
        return cast(io.BufferedReader, self.file)

    def readline(self) -> bytes:
        line = bytearray()
        while True:
            self._arm()
            ahead = self._stream.peek(1)  # at most one read from the socket
            if not ahead:
                raise self.abort("socket error: EOF")
            cut = ahead.find(b"\n")
            line += self._stream.read(len(ahead) if cut < 0 else cut + 1)
            if cut >= 0:
                return bytes(line)
            if len(line) > MAX_LINE:
                raise self.error(f"a line longer than {MAX_LINE} bytes")

    def read(self, size: int) -> bytes:
        kept = bytearray()
        left = size
        while left > 0:
            self._arm()
            chunk = self._stream.read1(min(left, _CHUNK))
            if not chunk:
                raise self.abort("socket error: EOF")
            left -= len(chunk)
            if len(kept) <= MAX_MESSAGE:
                kept += chunk[: MAX_MESSAGE + 1 - len(kept)]
        return bytes(kept)


class _BoundedTLS(_Bounded, imaplib.IMAP4_SSL):
    pass


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
                self.imap: imaplib.IMAP4 = _BoundedTLS(
                    host, port, ssl_context=ssl.create_default_context(), timeout=IMAP_TIMEOUT
                )
            else:
                self.imap = _Bounded(host, port, timeout=IMAP_TIMEOUT)
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
                    limit = MAX_MESSAGE // 1_000_000
                    yield Mail(uid.decode(), b"", refused=f"larger than {limit} MB: set aside")
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

    def settle(self) -> None:
        """Remove what COPY and STORE filed (servers without MOVE), before waiting."""
        if self.expunge:
            try:
                self.imap.expunge()
            except (OSError, imaplib.IMAP4.error) as error:
                raise NewsletterError(f"{self.where}: {_imap_error(error)}") from None
            self.expunge = False

    def wait(self, stop: Callable[[], bool], seconds: float) -> bool:
        """Until new mail arrives (IMAP IDLE, RFC 2177; a NOOP a minute on a server without
        it), `seconds` pass or `stop()` says so: whether mail may have arrived. Checks
        `stop` every second. Raises NewsletterError when the connection is lost."""
        ends = time.monotonic() + seconds
        try:
            if "IDLE" not in self.imap.capabilities:
                self.imap.untagged_responses.pop("EXISTS", None)
                poll = time.monotonic() + NOOP_SECONDS
                while not stop() and time.monotonic() < ends:
                    time.sleep(min(1.0, max(0.0, ends - time.monotonic())))
                    if time.monotonic() >= poll:
                        poll = time.monotonic() + NOOP_SECONDS
                        self.imap.noop()
                        if self.imap.untagged_responses.pop("EXISTS", None):
                            return True
                return not stop()
            bounded = cast(_Bounded, self.imap)
            tag = bounded._new_tag()
            bounded.send(tag + b" IDLE\r\n")
            first = self._line(bounded, 10.0)
            if first is None or not first.startswith(b"+"):
                raise NewsletterError(f"{self.where}: the server refused IDLE ({first!r})")
            arrived = False
            while not stop() and time.monotonic() < ends and not arrived:
                line = self._line(bounded, 1.0)
                arrived = line is not None and line.rstrip().upper().endswith(b"EXISTS")
            bounded.send(b"DONE\r\n")
            while True:  # the untagged updates, then IDLE's own answer
                line = self._line(bounded, 10.0)
                if line is None:
                    raise NewsletterError(f"{self.where}: no answer to DONE")
                if line.startswith(tag + b" "):
                    return arrived or not stop()
                arrived = arrived or line.rstrip().upper().endswith(b"EXISTS")
        except (OSError, imaplib.IMAP4.error, imaplib.IMAP4.abort) as error:
            raise NewsletterError(f"{self.where}: {_imap_error(error)}") from None

    @staticmethod
    def _line(imap: _Bounded, seconds: float) -> bytes | None:
        """One line within `seconds`, or None (the server said nothing)."""
        imap._deadline = time.monotonic() + seconds
        try:
            return imap.readline()
        except TimeoutError:
            return None

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
    if isinstance(error, TimeoutError):
        return text if "complete answer" in text else f"no answer within {IMAP_TIMEOUT:.0f} s"
    if "AUTHENTICATIONFAILED" in text.upper() or "LOGIN" in text.upper():
        return "login refused: check the user in the URL and NEWSLETTER_IMAP_PASSWORD"
    return text[:200] or type(error).__name__
