"""The ledger writer: the one thread that writes a send's ledger rows, in groups.

Connections ask it for rows (`take`), to start a row (`start`: the row is `sending`, and
committed, once its ticket says so) and to record an outcome (`record`). Whatever arrives
while a transaction commits goes into the next one, so one commit covers the starts and
outcomes of every connection: a start is durable before its message goes out and an outcome
before it is counted, without a commit per message. Claims come from here too, a batch
whenever the rows waiting in memory run low; claimed rows are not in doubt (ledger.py).

Durability. The failure covered is the sending process dying (kill -9, the OOM killer, a
crash): a commit is then safe in either database as soon as it returns, and so the writer
uses each database's cheaper setting. SQLite runs in WAL with synchronous=NORMAL (FULL, which
also covers a power loss, cost 7 % of the throughput: 1,815 against 1,950 msg/s); the
writer's PostgreSQL connection turns synchronous_commit off (1,809 -> 2,179 msg/s in one
process, 4 connections: with it on, every start waited for a WAL flush). After a power loss
or a database server crash the last commits may be undone (PostgreSQL: at most about 0.6 s
of them): a row started in them is queued again, and may reach its reader twice. Measured
alone (one UPDATE and a commit): SQLite NORMAL 29 µs, FULL 252 µs; PostgreSQL 450 µs on,
415 µs off. A commit costs a connection nothing while it is shorter than the message on the
wire: against a fast relay the next row is started before the current message is sent.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from newsletter.db import Cursor
from newsletter.delivery import ledger
from newsletter.delivery.ledger import Claimed, Outcome, RetryPolicy
from newsletter.errors import DatabaseError, IdentityLost, NewsletterError

GUARD_SECONDS = 5.0


@dataclass
class Ticket:
    """A start asked for: settled once the row is `sending` (started) or will not be."""

    row: Claimed
    settled: threading.Event = field(default_factory=threading.Event)
    started: bool = False

    def wait(self) -> bool:
        self.settled.wait()
        return self.started


_REFILL = "refill"
_Request = Ticket | Outcome | str | None


class LedgerWriter:
    """Claims, starts and outcomes of one sender on one issue, committed in groups by a
    thread of its own. `halt` is shared with the connections: set, nothing more is taken
    or started. `on_written(outcomes, skipped)` runs after each commit that recorded some."""

    def __init__(
        self,
        engine: Engine,
        issue_id: int,
        newsletter: str,
        *,
        halt: threading.Event,
        policy: RetryPolicy,
        batch: int,
        claimed_by: str | None = None,
        confirm: Callable[[], None] | None = None,
        on_written: Callable[[list[Outcome], int], None] | None = None,
        budget: int | None = None,
        quota: Callable[[Cursor], int | None] | None = None,
        guard: Callable[[Cursor], str | None] | None = None,
    ) -> None:
        self.engine, self.issue_id, self.newsletter = engine, issue_id, newsletter
        self.halt, self.policy, self.batch = halt, policy, batch
        self.claimed_by, self.confirm, self.on_written = claimed_by, confirm, on_written
        self.paused: str | None = None
        self.error: NewsletterError | None = None
        # Rows this run may still claim (the day's quota, pace.py); None: no limit. With
        # `quota`, asked again at each claim under the quota's lock (pace.claimable), so
        # runs at once share it.
        self.budget = budget
        self.quota = quota
        # Asked before claims: a reason to pause the send (the complaint rate), or None.
        self.guard = guard
        self._guarded = 0.0
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._ready: deque[Claimed] = deque()
        self._exhausted = False
        self._asked = False
        # Rows handed to connections whose start was refused or outcome not yet committed:
        # while any are out, a requeued one may yet come back to be sent.
        self._out = 0
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    # The connections' side.

    def take(self, *, wait: bool) -> Claimed | None:
        """The next row to send; None when there is none now (`wait=False`) or will be none
        (`wait=True`: the ledger has no more and no row out can come back)."""
        with self._cond:
            while not self.halt.is_set():
                if len(self._ready) <= self.batch // 2:
                    self._ask()
                if self._ready:
                    self._out += 1
                    return self._ready.popleft()
                if not wait or (self._exhausted and self._out == 0):
                    return None
                self._cond.wait()
            return None

    def give_back(self, row: Claimed) -> None:
        """A row taken and not started: first in line again."""
        with self._cond:
            self._ready.appendleft(row)
            self._out -= 1
            self._cond.notify_all()

    def start(self, row: Claimed) -> Ticket:
        ticket = Ticket(row)
        self._requests.put(ticket)
        return ticket

    def record(self, outcome: Outcome) -> None:
        self._requests.put(outcome)

    def stop(self) -> None:
        """Let every connection's `take` return: after a pause or a fatal error."""
        with self._cond:
            self.halt.set()
            self._cond.notify_all()

    def close(self) -> None:
        """Commit what is left, hand unsent claimed rows back, and end the thread."""
        self._requests.put(None)
        self._thread.join()

    def _ask(self) -> None:
        if not self._exhausted and not self._asked:
            self._asked = True
            self._requests.put(_REFILL)

    # The writer's side.

    def _run(self) -> None:
        batch: list[_Request] = []
        closing = False
        try:
            with self.engine.connect() as connection:
                # The driver's own cursor and transactions: no session, whose bookkeeping
                # cost more than the statements (Cursor).
                cursor = Cursor(connection)
                postgresql = connection.dialect.name == "postgresql"
                if postgresql:
                    cursor.count("SET synchronous_commit = off")
                    cursor.commit()
                try:
                    while not closing:
                        batch = self._next_batch()
                        closing = None in batch
                        self._write(cursor, batch, closing)
                except BaseException:
                    connection.invalidate()  # not back to the pool with the setting above
                    raise
                if postgresql:
                    cursor.count("RESET synchronous_commit")
                    cursor.commit()
        except (SQLAlchemyError, OSError) as error:
            reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
            self.error = DatabaseError(f"sending stopped: cannot write the ledger: {reason}")
            self._fail(batch, closing)
        except Exception as error:  # a bug must stop the send, not leave connections waiting
            self.error = NewsletterError(f"sending stopped: {type(error).__name__}: {error}")
            self._fail(batch, closing)

    def _next_batch(self) -> list[_Request]:
        batch = [self._requests.get()]
        while True:
            try:
                batch.append(self._requests.get_nowait())
            except queue.Empty:
                return batch

    def _write(self, cursor: Cursor, batch: list[_Request], closing: bool) -> None:
        outcomes = [item for item in batch if isinstance(item, Outcome)]
        tickets = [item for item in batch if isinstance(item, Ticket)]
        halted = self.halt.is_set()
        if outcomes:
            ledger.record(cursor, outcomes, self.policy)
        started: set[int] = set()
        skipped = 0
        if tickets and not halted:
            rows = [ticket.row for ticket in tickets]
            started, skipped = ledger.start(cursor, rows, self.newsletter, self.claimed_by)
        elif tickets:
            ledger.release(cursor, [ticket.row.id for ticket in tickets])
        claimed: list[Claimed] = []
        exhausted = None
        if _REFILL in batch and not halted and not closing:
            claimed, claim_skipped = self._claim(cursor)
            skipped += claim_skipped
            exhausted = not claimed and not claim_skipped
        if closing:
            with self._cond:
                left = [row.id for row in self._ready]
                self._ready.clear()
            ledger.release(cursor, left)
        cursor.commit()
        with self._cond:
            self._ready.extend(claimed)
            if _REFILL in batch:
                self._asked = False
            if exhausted is not None:
                self._exhausted = exhausted
            if any(outcome.kind == "requeue" for outcome in outcomes):
                self._exhausted = False  # handed back: claimable again
            self._out -= len(outcomes) + sum(ticket.row.id not in started for ticket in tickets)
            self._cond.notify_all()
        for ticket in tickets:
            ticket.started = ticket.row.id in started
            ticket.settled.set()
        if self.on_written and (outcomes or skipped):
            self.on_written(outcomes, skipped)

    def _claim(self, cursor: Cursor) -> tuple[list[Claimed], int]:
        if self.confirm is not None:
            try:
                self.confirm()
            except IdentityLost as error:
                # Peers may be taking this worker's rows back already: claim no more.
                self.paused = str(error)
                self.stop()
                return [], 0
        cause = None
        if self.guard is not None and time.monotonic() >= self._guarded:
            # At most every GUARD_SECONDS: the count is a query, claims come every few rows.
            self._guarded = time.monotonic() + GUARD_SECONDS
            cause = self.guard(cursor)
        if cause is not None:
            self.paused = cause
            self.stop()
            return [], 0
        if self.quota is not None:
            self.budget = self.quota(cursor)
        size = self.batch if self.budget is None else min(self.batch, self.budget)
        if size <= 0:
            self.paused = "the day's quota is reached; send --due goes on tomorrow"
            return [], 0
        claimed, skipped = ledger.claim(
            cursor, self.issue_id, self.newsletter, size, self.claimed_by
        )
        if self.budget is not None:
            self.budget -= len(claimed)
        return claimed, skipped

    def _fail(self, batch: list[_Request], closing: bool) -> None:
        """After a database error: stop the send, and settle every ticket, of the failed
        batch and still to come (as not started), until closed, so that no connection waits
        forever. Rows left in `sending` are the next run's to recover."""
        self.stop()
        while True:
            for item in batch:
                if isinstance(item, Ticket):
                    item.settled.set()
            if closing:
                return
            batch = self._next_batch()
            closing = None in batch
