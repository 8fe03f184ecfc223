"""Counting clicks and opens: which requests count, and a writer that never loses one.

Not counted (the redirect still answers): HEAD requests; requests that announce a
prefetch (`Purpose`, `Sec-Purpose`, `X-Purpose`, `X-Moz`); and known link scanners and
previewers by User-Agent, by product (mail security gateways
fetch every link of a message on delivery; chat apps and crawlers fetch previews), not by
the HTTP library: a request from curl or a headless browser is somebody's click. For
opens the same rules apply, and image proxies that fetch every image (Apple Mail Privacy
Protection, Google's and Yahoo's proxies) count as `machine` opens, apart from the rest.

A client's repeats and a reader's token replayed by others count once within a window
(`Repeats`; docs/privacy.md).

Each counted request waits for the commit that holds it (a group commit every few
milliseconds, across all requests) before it is answered, so a count the server answered
for is a count on disk, and the database sees one transaction per group, not per click.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.engine import Engine

from newsletter.db import Cursor

log = logging.getLogger("newsletter.web.counting")

SCANNERS = re.compile(
    r"bot\b|bot/|crawl|spider|slurp|preview|scan|proofpoint|urldefense|mimecast|barracuda|"
    r"symantec|messagelabs|trend ?micro|sophos|fortinet|fortiguard|forcepoint|websense|"
    r"zscaler|cisco|ironport|fireeye|trellix|checkpoint|check point|avanan|cloudmark|"
    r"bitdefender|kaspersky|eset|sonicwall|barracuda|hornet|libraesva|safelinks|"
    r"microsoft office|ms-office|slackbot|discordbot|facebookexternalhit|twitterbot|"
    r"whatsapp|telegrambot|linkedinbot|skypeuripreview",
    re.IGNORECASE,
)
IMAGE_PROXIES = re.compile(r"googleimageproxy|yahoomailproxy|ymailproxy", re.IGNORECASE)
# Apple's Mail Privacy Protection fetches through Apple's network with a bare UA.
APPLE = ipaddress.ip_network("17.0.0.0/8")
PREFETCH = ("purpose", "sec-purpose", "x-purpose", "x-moz")


def counts(method: str, headers: Mapping[str, str]) -> bool:
    """Whether a request to a counted link is a reader's click."""
    if method.upper() != "GET":
        return False
    if any(headers.get(name, "").lower() in ("prefetch", "preview") for name in PREFETCH):
        return False
    # A request without a User-Agent counts: mail apps' in-app browsers and privacy tools
    # strip it, and counting them is the smaller error.
    return SCANNERS.search(headers.get("user-agent", "")) is None


def machine_open(headers: Mapping[str, str], client: str | None) -> bool:
    """An open fetched by a proxy that fetches every image, whoever reads the mail."""
    agent = headers.get("user-agent", "").strip()
    if IMAGE_PROXIES.search(agent) or agent == "Mozilla/5.0":
        return True
    try:
        return client is not None and ipaddress.ip_address(client) in APPLE
    except ValueError:
        return False


@dataclass(frozen=True)
class Hit:
    issue_id: int
    index: int  # -1: an open
    machine: bool = False
    delivery_id: int | None = None  # per-subscriber tracking only
    counted: bool = True  # False: only the reader's record (a repeat from this client)


REPEAT_SECONDS = 600.0


@dataclass
class Repeats:
    """What was counted lately: a (link, client) or a (link, reader) counts once within
    REPEAT_SECONDS. A client is its address and User-Agent (readers behind one office
    address still count apart by their browsers); a reader is the `?r=` token's row, so a
    shared link clicked by others adds to the totals but never to that reader's record
    more than once. Held in memory, at most `limit` entries, the oldest dropped first: a
    flood of distinct clients costs memory it does not keep."""

    seconds: float = REPEAT_SECONDS
    limit: int = 200_000
    _seen: OrderedDict[tuple[object, ...], float] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def first(self, key: tuple[object, ...], now: float | None = None) -> bool:
        """Whether `key` is new within the window; records it either way."""
        moment = time.monotonic() if now is None else now
        with self._lock:
            while self._seen:
                oldest, when = next(iter(self._seen.items()))
                if moment - when < self.seconds and len(self._seen) < self.limit:
                    break
                del self._seen[oldest]
            seen = self._seen.get(key)
            if seen is not None and moment - seen < self.seconds:
                return False
            self._seen[key] = moment
            self._seen.move_to_end(key)
            return True


def client_key(client: str | None, headers: Mapping[str, str]) -> tuple[str, str]:
    return client or "", headers.get("user-agent", "")[:300]


@dataclass
class _Pending:
    hit: Hit
    done: asyncio.Future[bool]
    loop: asyncio.AbstractEventLoop


@dataclass
class CountWriter:
    """The one thread that writes counts, committing every request waiting at once."""

    engine: Engine
    pause: float = 0.004
    _queue: list[_Pending] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wake: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _closed: bool = False

    async def count(self, hit: Hit) -> bool:
        """Wait until the hit is committed; False if it could not be (logged)."""
        loop = asyncio.get_running_loop()
        pending = _Pending(hit, loop.create_future(), loop)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="counts", daemon=True)
                self._thread.start()
            self._queue.append(pending)
        self._wake.set()
        return await pending.done

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                batch, self._queue = self._queue, []
            if batch:
                ok = self._write([p.hit for p in batch])
                for pending in batch:
                    pending.loop.call_soon_threadsafe(_settle, pending.done, ok)
            elif self._closed:
                return
            if self.pause:
                self._wake.wait(self.pause)  # gather the next group

    def _write(self, hits: list[Hit]) -> bool:
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        tally = Counter((h.issue_id, h.index, h.machine) for h in hits if h.counted)
        try:
            with self.engine.connect() as connection:
                cursor = Cursor(connection)
                stamp = cursor.stamp(hour)
                for (issue_id, index, machine), number in tally.items():
                    cursor.count(
                        'INSERT INTO click_counts (issue_id, "index", hour, machine, count)'
                        ' VALUES (?, ?, ?, ?, ?) ON CONFLICT (issue_id, "index", hour, machine)'
                        " DO UPDATE SET count = click_counts.count + excluded.count",
                        issue_id,
                        index,
                        stamp,
                        machine,
                        number,
                    )
                now = cursor.stamp(datetime.now(UTC))
                for hit in hits:
                    if hit.delivery_id is not None:
                        cursor.count(
                            'INSERT INTO reader_clicks (issue_id, "index", subscriber_id,'
                            " clicked_at) SELECT ?, ?, subscriber_id, ? FROM deliveries"
                            " WHERE id = ? AND issue_id = ? AND subscriber_id IS NOT NULL",
                            hit.issue_id,
                            hit.index,
                            now,
                            hit.delivery_id,
                            hit.issue_id,
                        )
                cursor.commit()
            return True
        except Exception as error:  # a count lost is logged; the reader still gets there
            log.error("%d counts not written: %s: %s", len(hits), type(error).__name__, error)
            return False


def _settle(future: asyncio.Future[bool], ok: bool) -> None:
    if not future.done():
        future.set_result(ok)
