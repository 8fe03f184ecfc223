"""N SMTP connections, each a thread sending the rows the ledger writer hands it.

A row is started (committed `sending`) just before its message goes out, so what a crash
leaves in doubt is what was on the wire (ledger.py): against a remote relay a connection
starts its next row in the same commit as its current one's outcome, one row per connection
in doubt; against a fast local one it starts the next while the current message is on the
wire, so the commit never holds it up, two per connection (PACE). Either way the next row
is taken before the current message goes, so that its envelope can go with the final dot
(transport.py); taken and not started, it is not in doubt.

Errors that are not about a recipient (refused connection, 421, 454, a sender refusal, a
lost connection) make the connection hand its next row back, back off before it
reconnects, blame nobody, and after `pause_after` of them in a row pause the whole send
(the rows left stay queued for a later run). A configuration error (bad credentials, no TLS
where TLS is required) or a bug stops the send at once.
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from newsletter.delivery.ledger import Claimed, Outcome, RetryPolicy
from newsletter.delivery.transport import Then, Transport
from newsletter.delivery.writer import LedgerWriter, Ticket
from newsletter.errors import ConfigError, NewsletterError, ProviderPaused, TransportError


@dataclass(frozen=True)
class SendOptions:
    connections: int = 4
    rate: float | None = None
    pause_after: int = 10
    backoff: float = 0.5
    retry: RetryPolicy = field(default_factory=RetryPolicy)


class RateLimiter:
    """At most `rate` sends a second across every connection, evenly spaced."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            slot = max(self.next, now)
            self.next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


_THROTTLED = re.compile(
    r"rate[ -]?limit|too many (?:messages|mails|connections|recipients|requests)|throttl|"
    r"slow down|\b4\.7\.\d{1,3}\b.{0,80}(?:rate|limit|try (?:again )?later)",
    re.IGNORECASE,
)


# A refusal of the sender, not the reader: Gmail's and Yahoo's bulk-sender rules (5.7.26
# unauthenticated, 5.7.25 no PTR, 5.7.27 SPF, 5.7.29 ARC, 5.7.30 DKIM/DMARC), Outlook.com's
# 550 5.7.515 (SPF, DKIM and DMARC), Microsoft's 5.7.708/5.7.750 and "access denied" of the
# sending IP, or the words of a DMARC, SPF or DKIM failure. The reader did nothing: their
# row is deferred, never failed, and a run of them pauses the send (POLICY_RUN).
_POLICY = re.compile(
    r"\b5\.7\.(?:2[3-9]|30|515|70[0-9]|750|1)\b.{0,200}?(?:dmarc|spf|dkim|authenticat|"
    r"ptr|reverse|arc|policy|sender|bulk|spam|reputation|block)|"
    r"\b5\.7\.(?:26|25|27|29|30|515)\b|unauthenticated (?:email|mail)|dmarc (?:policy|fail)",
    re.IGNORECASE | re.DOTALL,
)
POLICY_RUN = 5


def policy_refusal(error: TransportError) -> bool:
    """Whether a 5xx SMTP reply refuses our mail for the sender's authentication or
    reputation rather than for the reader's address."""
    return (
        error.smtp
        and error.code is not None
        and 500 <= error.code < 600
        and bool(_POLICY.search(str(error)))
    )


def classify(error: TransportError, delivery_id: int) -> tuple[Outcome, bool]:
    """(the row's outcome, whether the fault is the connection's rather than the recipient's).
    smtplib raises one class for 4xx and 5xx: the code decides."""
    code, text, smtp = error.code, str(error), error.smtp
    if error.stage in ("connect", "envelope") or code in (421, 454):
        return Outcome(delivery_id, "requeue", code, text, smtp=smtp), True
    if code is not None and 400 <= code < 500 and _THROTTLED.search(text):
        # A rate reply ("451 4.7.1 too many messages, slow down"): the same recipient again
        # in this run, after the back-off, never deferred for hours or failed for it.
        return Outcome(delivery_id, "requeue", code, text, smtp=smtp), True
    if error.stage == "after-dot":
        return Outcome(delivery_id, "unknown", code, text, smtp=smtp), True
    if error.stage == "before-dot":
        return Outcome(delivery_id, "deferred", code, text, smtp=smtp), True
    if policy_refusal(error):
        return Outcome(delivery_id, "deferred", code, text, smtp=smtp, policy=True), False
    if code is not None and 500 <= code < 600:
        return Outcome(delivery_id, "failed", code, text, smtp=smtp), False
    return Outcome(delivery_id, "deferred", code, text, smtp=smtp), code is None


def _why(outcome: Outcome) -> str:
    """Why a connection backed off, in the run's summary."""
    if (
        outcome.code in (421, 454)
        or outcome.wait is not None
        or _THROTTLED.search(outcome.error or "")
    ):
        return "throttled"
    if outcome.kind == "unknown":
        return "no answer"
    if outcome.kind == "deferred":
        return "server errors"
    return "unreachable"


# A connection starts its next row while the current message is on the wire only when
# messages take less than this: then the start's commit (about a millisecond) would cost a
# large share of each message's time. Against a slower relay (a remote one takes tens of
# milliseconds) it starts the next row after the current one's outcome, in the same commit,
# so that a crash leaves one row per connection in doubt rather than two.
PACE = 0.005


class Connections:
    """The connection threads of one send; `run` returns when they have all ended: the
    ledger has no more rows for them, or the send paused (`paused`) or stopped (`fatal`)."""

    def __init__(
        self,
        writer: LedgerWriter,
        make_transport: Callable[[], Transport],
        envelope: Callable[[Claimed], str],
        build: Callable[[Claimed], bytes],
        options: SendOptions,
    ) -> None:
        self.writer, self.make_transport = writer, make_transport
        self.envelope, self.build = envelope, build
        self.options = options
        self.rate = RateLimiter(options.rate) if options.rate else None
        self.lock = threading.Lock()
        self.errors_in_a_row = 0
        self.policy_in_a_row = 0
        self.paused: str | None = None
        self.fatal: NewsletterError | None = None
        # Seconds spent backing off, by why (throttled, server errors, no answer...).
        self.waited: defaultdict[str, float] = defaultdict(float)

    def run(self) -> None:
        # The first connection's transport, opened here once: it says whether it takes
        # batches, and the first sender thread goes on with it.
        try:
            first = self.make_transport()
        except ConfigError as error:
            self._stop(error)
            return
        work = self._work_batched if first.batched else self._work
        threads = [
            threading.Thread(
                target=work, args=(first if n == 0 else None,), name=f"sender-{n}", daemon=True
            )
            for n in range(max(1, self.options.connections))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _work(self, transport: Transport | None = None) -> None:
        failures = 0
        writer = self.writer
        ticket = self._next()
        ahead = True  # start the next row before sending this one: see PACE
        # The row to follow (taken now, started now or with this row's outcome) and its
        # envelope, which goes after this message's dot (transport.py).
        taken: Claimed | None = None
        then: Then = None
        try:
            while ticket is not None:
                if not ticket.wait():  # unsubscribed since the claim, or the send halted
                    ticket = self._next()
                    continue
                if writer.halt.is_set():
                    writer.record(Outcome(ticket.row.id, "requeue"))
                    break
                if self.rate:
                    self.rate.wait()
                row = ticket.row
                sender = then[0] if then and taken is row else self.envelope(row)
                taken = writer.take(wait=False)
                then = (self.envelope(taken), taken.email) if taken else None
                upcoming = writer.start(taken) if taken and ahead else None
                began = time.monotonic()
                outcome, connection_fault, transport = self._send(transport, row, sender, then)
                ahead = time.monotonic() - began < PACE
                writer.record(outcome)
                self._count(connection_fault, outcome)
                if connection_fault:
                    failures += 1
                    # Not held through the back-off: started, it would count as in doubt.
                    if upcoming is not None:
                        self._hand_back(upcoming)
                    elif taken is not None:
                        writer.give_back(taken)
                    taken = upcoming = None
                    self._back_off(outcome, failures)
                else:
                    failures = 0
                ticket = upcoming or (writer.start(taken) if taken else self._next())
        finally:
            if transport is not None:
                transport.close()

    def _work_batched(self, transport: Transport | None = None) -> None:
        """For a transport that takes many messages in one request (Postmark's batch
        endpoint): up to its `batch_size` rows taken and started together, one request, an
        outcome for each. A request that gets no answer leaves every row of it in doubt."""
        writer = self.writer
        failures = 0
        try:
            while not writer.halt.is_set():
                first = writer.take(wait=True)
                if first is None:
                    break
                transport = transport or self.make_transport()
                rows = [first]
                while len(rows) < transport.batch_size:
                    more = writer.take(wait=False)
                    if more is None:
                        break
                    rows.append(more)
                tickets = [writer.start(row) for row in rows]
                started = [ticket.row for ticket in tickets if ticket.wait()]
                if not started:
                    continue
                if writer.halt.is_set():
                    for row in started:
                        writer.record(Outcome(row.id, "requeue"))
                    break
                if self.rate:
                    for _ in started:
                        self.rate.wait()
                try:
                    results = self._send_batch(transport, started)
                except (ConfigError, ProviderPaused) as error:
                    for row in started:  # nothing went: back to the queue, not in doubt
                        writer.record(Outcome(row.id, "requeue"))
                    if isinstance(error, ProviderPaused):
                        self._pause(str(error))
                        break
                    raise
                for outcome, _ in results:
                    writer.record(outcome)
                fault = next((o for o, f in results if f), None)
                self._count(fault is not None, fault or results[0][0])
                if fault is not None:
                    failures += 1
                    self._back_off(fault, failures)
                else:
                    failures = 0
        except ConfigError as error:
            self._stop(error)
        except Exception as error:  # a bug must stop the send, not hang it
            self._stop(NewsletterError(f"sending stopped: {type(error).__name__}: {error}"))
        finally:
            if transport is not None:
                transport.close()

    def _back_off(self, outcome: Outcome, failures: int) -> None:
        """Wait as long as the other side asked (Retry-After), else doubling from `backoff`
        up to 30 s; wait() rather than sleep(): a pause or a fatal error ends it."""
        delay = outcome.wait
        if delay is None:
            delay = min(self.options.backoff * 2 ** min(failures - 1, 6), 30.0)
        with self.lock:
            self.waited[_why(outcome)] += delay
        self.writer.halt.wait(delay)

    def _send_batch(self, transport: Transport, rows: list[Claimed]) -> list[tuple[Outcome, bool]]:
        """One request for these rows: each row's outcome, and whether it was the
        connection's fault (the whole request's) rather than the recipient's."""
        items = [(self.envelope(row), row.email, self.build(row)) for row in rows]
        try:
            answers = transport.send_batch(items)
        except TransportError as error:
            results = [classify(error, row.id) for row in rows]
            if error.retry_after is not None:
                results = [(replace(o, wait=error.retry_after), f) for o, f in results]
            return results
        found: list[tuple[Outcome, bool]] = []
        for row, answer in zip(rows, answers, strict=True):
            if isinstance(answer, TransportError):
                found.append(classify(answer, row.id))
            else:
                found.append((Outcome(row.id, "sent", 250, provider_id=answer), False))
        return found

    def _next(self) -> Ticket | None:
        row = self.writer.take(wait=True)
        return self.writer.start(row) if row else None

    def _hand_back(self, ticket: Ticket) -> None:
        if ticket.wait():
            self.writer.record(Outcome(ticket.row.id, "requeue"))

    def _send(
        self, transport: Transport | None, row: Claimed, sender: str, then: Then
    ) -> tuple[Outcome, bool, Transport | None]:
        try:
            transport = transport or self.make_transport()
            accepted = transport.send(sender, row.email, self.build(row), then)
            return Outcome(row.id, "sent", 250, provider_id=accepted), False, transport
        except ConfigError as error:
            self._stop(error)
        except ProviderPaused as error:
            self._pause(str(error))
        except TransportError as error:
            outcome, connection_fault = classify(error, row.id)
            if error.retry_after is not None:
                outcome = replace(outcome, wait=error.retry_after)
            return outcome, connection_fault, transport
        except Exception as error:  # a bug must stop the send, not hang it
            self._stop(NewsletterError(f"sending stopped: {type(error).__name__}: {error}"))
        return Outcome(row.id, "requeue"), False, transport

    def _stop(self, error: NewsletterError) -> None:
        self.fatal = self.fatal or error
        self.writer.stop()

    def _pause(self, cause: str) -> None:
        """An answer that would be the same for every reader: the send pauses (exit 75),
        the rows go back to the queue, nobody is marked."""
        with self.lock:
            self.paused = self.paused or cause
        self.writer.stop()

    def _count(self, connection_fault: bool, outcome: Outcome) -> None:
        with self.lock:
            self.policy_in_a_row = self.policy_in_a_row + 1 if outcome.policy else 0
            if self.policy_in_a_row >= POLICY_RUN and not self.paused:
                self.paused = (
                    f"paused after {self.policy_in_a_row} refusals in a row of the sender, not "
                    f"the readers (their rows deferred): {outcome.error}; check SPF, DKIM and "
                    "DMARC for the From domain (newsletter doctor), then send again"
                )
                self.writer.stop()
            self.errors_in_a_row = self.errors_in_a_row + 1 if connection_fault else 0
            if self.errors_in_a_row >= self.options.pause_after and not self.paused:
                self.paused = (
                    f"paused after {self.errors_in_a_row} errors in a row: {outcome.error}"
                )
                self.writer.stop()
