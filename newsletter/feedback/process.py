"""`newsletter bounces process`: read every message of every source, act on its reports,
file it. One function the CLI calls and the tests call directly.

Reports are committed in groups (a commit per message would cost more than the parsing on
a folder of a hundred thousand) and each group's messages are filed only after its commit.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlmodel import Session

from newsletter.config import Config
from newsletter.db import Cursor
from newsletter.errors import ConfigError, NewsletterError, UsageError
from newsletter.feedback.mailboxes import Imap, Mail, Mailbox, open_source
from newsletter.feedback.parse import MAX_MESSAGE, Parsed, Report, Traces, parse
from newsletter.feedback.policy import Handled, apply

GROUP = 500  # messages per commit
GROUP_SECONDS = 1.0
UNREADABLE = Parsed([Report("unrecognised", counts=False)], Traces())
log = logging.getLogger("newsletter.feedback.process")


@dataclass
class ProcessReport:
    messages: int = 0
    unreadable: int = 0  # kept aside for a person: nothing we could read in them
    actions: Counter[str] = field(default_factory=Counter)
    # One line for each entry set aside unread or left in place (a link, a FIFO, a file
    # too large or not ours to move): the run went on past it.
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.unreadable else 0


def process(
    config: Config,
    engine: Engine,
    key: bytes,
    locations: list[str],
    *,
    dry_run: bool = False,
    envelope_to: str | None = None,
    on_report: Callable[[Handled], None] | None = None,
) -> ProcessReport:
    sources = [open_source(location, envelope_to=envelope_to) for location in locations]
    report = ProcessReport()
    try:
        for source in sources:
            _process_one(config, engine, key, source, report, dry_run, on_report)
    finally:
        for source in sources:
            source.close()
    return report


IDLE_SECONDS = 25 * 60  # RFC 2177: renew IDLE before a server's 30-minute cut-off
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 300.0


@dataclass
class WatchReport(ProcessReport):
    """`bounces process imaps://... --watch`: what it read, and how often it reconnected."""

    reconnects: int = 0


def watch(
    config: Config,
    engine: Engine,
    key: bytes,
    location: str,
    stop: threading.Event,
    *,
    dry_run: bool = False,
    on_report: Callable[[Handled], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    idle_seconds: float = IDLE_SECONDS,
) -> WatchReport:
    """Process an IMAP folder as mail arrives until `stop` is set: everything there first,
    then IMAP IDLE and the new mail each time the server says some came. A lost connection
    (or one that cannot be made) is tried again after 1 s, then 2, 4 ... at most 5 minutes,
    with jitter, and said through `on_note`; `stop` ends a wait at once."""
    if not location.startswith(("imap://", "imaps://")):
        raise UsageError(f"--watch reads an IMAP folder (imaps://user@host/Folder), not {location}")
    report = WatchReport()
    delay = BACKOFF_FIRST
    while not stop.is_set():
        source: Imap | None = None
        try:
            opened = open_source(location)
            assert isinstance(opened, Imap)
            source = opened
            delay = BACKOFF_FIRST
            while not stop.is_set():
                _process_one(config, engine, key, source, report, dry_run, on_report)
                source.settle()
                source.wait(stop.is_set, idle_seconds)
        except (ConfigError, UsageError):
            raise  # a missing password or a bad URL: no retry fixes it
        except NewsletterError as error:
            if stop.is_set():
                break
            report.reconnects += 1
            wait = delay * random.uniform(0.8, 1.2)
            if on_note:
                on_note(f"{error}; trying again in {wait:.0f} s")
            stop.wait(wait)
            delay = min(delay * 2, BACKOFF_MAX)
        finally:
            if source is not None:
                source.close()
    return report


def _process_one(
    config: Config,
    engine: Engine,
    key: bytes,
    source: Mailbox,
    report: ProcessReport,
    dry_run: bool,
    on_report: Callable[[Handled], None] | None,
) -> None:
    settings = config.bounces
    pending: list[tuple[Mail, str]] = []
    started = time.monotonic()
    with Session(engine, expire_on_commit=False) as session:

        def settle() -> None:
            if dry_run:
                session.rollback()
            else:
                session.commit()
                for mail, folder in pending:
                    note = source.file(mail, folder)
                    if note:
                        report.notes.append(note)
            pending.clear()

        for mail in source.messages():
            report.messages += 1
            if mail.refused:
                report.notes.append(f"{mail.source}: {mail.refused}")
            parsed = _read(mail, key, config.newsletter_id)
            readable = not all(r.kind == "unrecognised" for r in parsed.reports)
            try:
                handled = _apply(session, config, key, parsed, source.origin, mail)
            except Exception as error:  # noqa: BLE001 - one message is not the run's end
                log.warning("%s: set aside (%s)", mail.source, type(error).__name__)
                report.notes.append(f"{mail.source}: could not be stored; set aside")
                readable = False
                handled = _apply(session, config, key, UNREADABLE, source.origin, mail)
            if not readable:
                report.unreadable += 1
            for item in handled:
                report.actions[item.action] += 1
                if on_report:
                    on_report(item)
            folder = settings.processed_folder if readable else settings.unrecognised_folder
            pending.append((mail, folder))
            if len(pending) >= GROUP or time.monotonic() - started > GROUP_SECONDS:
                settle()
                started = time.monotonic()
        settle()


def _apply(
    session: Session, config: Config, key: bytes, parsed: Parsed, origin: str, mail: Mail
) -> list[Handled]:
    with Cursor.of(session).savepoint():
        return apply(
            session,
            config,
            parsed,
            origin=origin,
            source=mail.source,
            digest=_digest(mail),
            raw=mail.raw,
        )


def _digest(mail: Mail) -> str:
    """What an unverified report is recognised by: its bytes, or, for an entry with none
    (a link, a FIFO, an empty file), its name and why it was not read."""
    if mail.raw:
        return hashlib.sha256(mail.raw).hexdigest()
    return hashlib.sha256(f"{mail.source}\x00{mail.refused}".encode("utf-8", "replace")).hexdigest()


def _read(mail: Mail, key: bytes, newsletter: str) -> Parsed:
    """The message's reports; one `unrecognised` report for one too big or too broken to
    read (a parser bug on hostile input must cost one message, not the run)."""
    if mail.refused:
        return Parsed([Report("unrecognised", diagnostic=mail.refused, counts=False)], Traces())
    if not mail.raw or len(mail.raw) > MAX_MESSAGE:
        return UNREADABLE
    try:
        return parse(mail.raw, key, newsletter, mail.envelope_to)
    except Exception:  # noqa: BLE001 - one unreadable message is not the run's end
        return UNREADABLE
