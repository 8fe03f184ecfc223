"""The delivery ledger: one row per (issue, recipient), and the only truth about a send.

States:

    queued ──claim──▶ claimed ──start──▶ sending ──250──▶ sent
                         │                  │
                         │                  ├─ 4xx, or connection lost before the final dot
                         │                  │    ──▶ deferred (retried with exponential
                         │                  │        backoff and jitter; failed once the row
                         │                  │        is older than the retry window)
                         │                  ├─ 5xx ──▶ failed   (5.1.x, "no such user", also
                         │                  │                    suppresses)
                         │                  ├─ lost after the final dot, or no reply ──▶ unknown
                         │                  └─ the connection, not the recipient, failed (421,
                         │                     454, refused connection) ──▶ queued again
                         └─ the sender stopped before starting it ──▶ queued again

    skipped: unsubscribed, erased or suppressed before its message was started.

    sent ──a hard bounce heard back later──▶ bounced; ──a complaint──▶ complained
    (feedback/policy.py: returned mail and providers' webhooks, after the send).

`claimed` rows wait in the sender's memory; a row becomes `sending` (committed) only when a
connection is about to send it (connections.py: with a remote relay, one row per
connection; with a fast local one, the next row too, started while the current one is on
the wire so that the commit never holds the connection up). So a sender that is killed
leaves at most two rows per connection in `sending`, one against a remote relay: those
and only those are in doubt. The next run (which takes the issue's run lock, so the crashed one
is certainly gone) turns them into `unknown` and its `claimed` rows back into `queued`;
`newsletter deliveries resolve` settles the unknown ones by resending or marking them sent.
Nothing else is ever sent twice, and nothing is skipped: an issue is finished only when no
row is queued, claimed, sending or deferred. The same start re-reads the subscription, so an
unsubscribe takes effect for every message not yet started.

The audience is written once, when the send starts (`issues.enqueued_at`): active
subscriptions of the newsletter, minus suppressed addresses, one row per normalised address.
Later subscribers wait for the next issue.

Who commits. The per-message statements (claim, start, record, release, give back) do
not: the sender's ledger writer (writer.py) groups the claims, starts and outcomes of every
connection into one transaction. Four functions are steps of their own and commit what they
did before they return, each saying so in its docstring: `enqueue` (the audience written
once, in one transaction), `recover` (a dead sender's rows settled before a new send
starts), `resolve` (an operator's decision on rows in doubt) and `finish_if_done` (the
issue marked sent when nothing is left).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, get_args

import sqlalchemy as sa
from sqlmodel import Session, col, select

from newsletter.audience import lifecycle
from newsletter.dates import utc_now
from newsletter.db import Cursor
from newsletter.models import (
    ApprovedIssue,
    Delivery,
    Subscriber,
    Subscription,
)
from newsletter.untrusted import stored, strip_controls

States = Literal[
    "queued",
    "claimed",
    "sending",
    "sent",
    "deferred",
    "failed",
    "unknown",
    "skipped",
    "bounced",
    "complained",
]
STATES: tuple[States, ...] = get_args(States)
OPEN: tuple[States, ...] = ("queued", "claimed", "sending", "deferred")
# What a stopped sender leaves behind, and what becomes of it.
_LEFT = {"claimed": "queued", "sending": "unknown"}
_NO_SUCH_USER = re.compile(r"\b5\.1\.\d{1,3}\b")


@dataclass(frozen=True)
class RetryPolicy:
    first: timedelta = timedelta(minutes=5)
    cap: timedelta = timedelta(hours=6)
    give_up_after: timedelta = timedelta(days=3)

    def next_attempt(self, attempts: int, now: datetime) -> datetime:
        delay = min(self.first * (1 << min(max(attempts - 1, 0), 20)), self.cap)
        return now + delay * random.uniform(0.8, 1.2)  # jitter spreads the retries out


@dataclass(frozen=True)
class Claimed:
    """What the sender needs of a row, detached from the session."""

    id: int
    subscriber_id: int
    email: str
    email_key: str
    name: str | None
    token_id: str = ""


OutcomeKind = Literal["sent", "deferred", "failed", "unknown", "requeue"]


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    kind: OutcomeKind
    code: int | None = None
    error: str | None = None
    # The provider's id of an accepted message (HTTP APIs): their webhooks name it.
    provider_id: str | None = None
    # Seconds the other side asked us to wait before the next try (Retry-After); not stored.
    wait: float | None = None
    # Whether the code and words are an SMTP server's reply (not a provider's API answer).
    smtp: bool = True
    # A refusal of the sender's authentication or reputation (connections.policy_refusal);
    # not stored.
    policy: bool = False

    @property
    def no_such_user(self) -> bool:
        """A 5.1.x in an SMTP reply's words: the address is dead. Never read from an HTTP
        provider's words, which may quote anything (one 400 saying "550 5.1.1" once bounced
        every reader of every list)."""
        return self.smtp and self.kind == "failed" and bool(_NO_SUCH_USER.search(self.error or ""))


def audience(session: Session, newsletter: str, batch: int = 1000) -> Iterator[Subscriber]:
    """Active subscribers of the newsletter minus suppressed addresses, streamed by id."""
    last = 0
    while True:
        # Walk the subscriptions in subscriber order through their (subscriber_id,
        # newsletter) index and filter the status here: with `status = 'active'` in SQL,
        # SQLite scans every active row for each batch, quadratic over a large list.
        page = session.exec(
            select(Subscriber, Subscription.status)
            .join(Subscription, col(Subscription.subscriber_id) == col(Subscriber.id))
            .where(Subscription.newsletter == newsletter, col(Subscription.subscriber_id) > last)
            .order_by(col(Subscription.subscriber_id))
            .limit(batch)
        ).all()
        if not page:
            return
        last = page[-1][0].id or last
        people = [person for person, status in page if status == "active"]
        if not people:
            continue
        blocked = lifecycle.suppressed_among(session, [p.email_key for p in people])
        for person in {p.email_key: p for p in people}.values():
            if person.email_key not in blocked:
                yield person


def enqueue(session: Session, issue: ApprovedIssue) -> int:
    """Write the audience to the ledger, once, in one transaction. The issue's row is
    locked first (PostgreSQL), so senders starting together write it once between them.
    Commits."""
    if issue.enqueued_at is not None:
        return 0
    locked = session.exec(
        select(ApprovedIssue)
        .where(col(ApprovedIssue.id) == issue.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    if locked.enqueued_at is not None:
        session.commit()
        return 0
    now = utc_now()
    count = 0
    rows: list[dict[str, object]] = []
    for person in audience(session, issue.newsletter):
        rows.append(
            {
                "issue_id": issue.id,
                "subscriber_id": person.id,
                "email": person.email,
                "email_key": person.email_key,
                "name": person.name,
                "state": "queued",
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
        )
        if len(rows) >= 1000:
            session.execute(sa.insert(Delivery), rows)
            count += len(rows)
            rows = []
    if rows:
        session.execute(sa.insert(Delivery), rows)
        count += len(rows)
    locked.enqueued_at = issue.enqueued_at = now
    session.add(locked)
    session.commit()
    return count


def recover(
    session: Session,
    issue_id: int,
    alive: Callable[[str], bool] | None = None,
) -> int:
    """Rows a stopped sender left behind: `claimed` ones go back to `queued` (it never
    started them), `sending` ones become `unknown` (it may have handed them over). Without
    `alive`, every such row: call it so only while holding the issue's run lock
    exclusively, when no other process can still be sending them. With `alive` (senders
    sharing the issue), only the rows of claimants it reports gone, and rows no sender
    claimed by name. Commits; returns how many rows became `unknown`."""
    where = [col(Delivery.issue_id) == issue_id, col(Delivery.state).in_(list(_LEFT))]
    if alive is not None:
        claimants = session.exec(select(Delivery.claimed_by).where(*where).distinct()).all()
        gone = [c for c in claimants if c is not None and not alive(c)]
        anonymous = None in claimants
        if not gone and not anonymous:
            session.commit()
            return 0
        chosen = col(Delivery.claimed_by).in_(gone)
        where.append(sa.or_(chosen, col(Delivery.claimed_by).is_(None)) if anonymous else chosen)
    now = utc_now()
    session.execute(
        sa.update(Delivery)
        .where(*where, col(Delivery.state) == "claimed")
        .values(state="queued", updated_at=now, claimed_by=None)
    )
    result = session.execute(
        sa.update(Delivery)
        .where(*where, col(Delivery.state) == "sending")
        .values(state="unknown", updated_at=now, last_error="the sending process stopped")
    )
    session.commit()
    return int(getattr(result, "rowcount", 0) or 0)


def claim(
    session: Session | Cursor,
    issue_id: int,
    newsletter: str,
    limit: int,
    claimed_by: str | None = None,
) -> tuple[list[Claimed], int]:
    """Take up to `limit` due rows as `claimed` (nothing is sent yet: a sender that stops
    hands them back). Rows of people who left already are `skipped` here, to save a start.
    On PostgreSQL, FOR UPDATE SKIP LOCKED lets several senders claim side by side."""
    driver = Cursor.of(session)
    now = driver.stamp(utc_now())
    lock = "" if driver.sqlite else " FOR UPDATE SKIP LOCKED"
    columns = "SELECT id, subscriber_id, email, email_key, name FROM deliveries"
    # Two queries, not one with OR: each walks the (issue_id, state, id) index in order, so a
    # claim costs the same at the end of a million-row send as at its start.
    rows = driver.rows(
        f"{columns} WHERE issue_id = ? AND state = 'queued' ORDER BY id LIMIT ?{lock}",
        issue_id,
        limit,
    )
    if len(rows) < limit:
        rows += driver.rows(
            f"{columns} WHERE issue_id = ? AND state = 'deferred' AND next_attempt_at <= ?"
            f" ORDER BY id LIMIT ?{lock}",
            issue_id,
            now,
            limit - len(rows),
        )
    if not rows:
        return [], 0
    # The status is filtered here, not in SQL: given `status = 'active'`, SQLite's planner
    # prefers the status index and scans every active subscription to find these few.
    people = driver.rows(
        "SELECT s.subscriber_id, s.status, p.token_id FROM subscriptions s"
        " JOIN subscribers p ON p.id = s.subscriber_id"
        " WHERE s.subscriber_id IN ? AND s.newsletter = ?",
        [row[1] for row in rows if row[1] is not None],
        newsletter,
    )
    active = {person: token for person, status, token in people if status == "active"}
    # By address: an erased person's suppression has none, but their subscriber is gone.
    blocked = {
        email
        for (email,) in driver.rows(
            "SELECT email FROM suppressions WHERE email IN ?", [row[3] for row in rows]
        )
    }
    claimed = [
        Claimed(i, person, email, key, name, active[person])
        for i, person, email, key, name in rows
        if person in active and key not in blocked
    ]
    taken = {c.id for c in claimed}
    skipped = [row[0] for row in rows if row[0] not in taken]
    mine = ("claimed_by = NULL", ()) if claimed_by is None else ("claimed_by = ?", (claimed_by,))
    if claimed:
        driver.count(
            f"UPDATE deliveries SET state = 'claimed', updated_at = ?, {mine[0]} WHERE id IN ?",
            now,
            *mine[1],
            [c.id for c in claimed],
        )
    if skipped:
        driver.count(
            "UPDATE deliveries SET state = 'skipped', updated_at = ? WHERE id IN ?", now, skipped
        )
    return claimed, len(skipped)


def _mine(claimed_by: str | None) -> tuple[str, tuple[object, ...]]:
    if claimed_by is None:
        return "state = 'claimed' AND claimed_by IS NULL", ()
    return "state = 'claimed' AND claimed_by = ?", (claimed_by,)


def start(
    session: Session | Cursor,
    rows: list[Claimed],
    newsletter: str,
    claimed_by: str | None = None,
) -> tuple[set[int], int]:
    """Mark rows `sending` just before their messages go out: (the ids started, how many
    were skipped). The subscription is read again, in the same statement, so someone who
    left since the claim is `skipped`; a row no longer claimed by this sender (a peer took
    it back after this worker lost its identity) is neither."""
    if not rows:
        return set(), 0
    driver = Cursor.of(session)
    now = driver.stamp(utc_now())
    ids = [row.id for row in rows]
    mine, claimant = _mine(claimed_by)
    # One statement, no RETURNING (each row returned is another trip through the driver):
    # the row count says whether all started, as they nearly always do. The subscriptions'
    # unique (subscriber_id, newsletter) index and the suppressions' email index answer
    # the lookups; an erased person's suppression has no email, but their subscriber, and
    # so their subscription, is gone.
    count = driver.count(
        "UPDATE deliveries SET state = 'sending', updated_at = ?"
        f" WHERE id IN ? AND {mine} AND EXISTS (SELECT 1 FROM subscriptions s"
        " WHERE s.subscriber_id = deliveries.subscriber_id AND s.newsletter = ?"
        " AND s.status = 'active') AND NOT EXISTS (SELECT 1 FROM suppressions p"
        " WHERE p.email = deliveries.email_key)",
        now,
        ids,
        *claimant,
        newsletter,
    )
    if count == len(ids):
        return set(ids), 0
    states = driver.rows("SELECT id, state FROM deliveries WHERE id IN ?", ids)
    started = {row_id for row_id, state in states if state == "sending"}
    leaving = [row_id for row_id in ids if row_id not in started]
    skipped = driver.count(
        f"UPDATE deliveries SET state = 'skipped', updated_at = ? WHERE id IN ? AND {mine}",
        now,
        leaving,
        *claimant,
    )
    return started, skipped


def release(session: Session | Cursor, ids: list[int]) -> None:
    """Rows this sender claimed or started but never handed over go back to `queued`."""
    if ids:
        cursor = Cursor.of(session)
        cursor.count(
            "UPDATE deliveries SET state = 'queued', updated_at = ?, claimed_by = NULL"
            " WHERE id IN ? AND state IN ?",
            cursor.stamp(utc_now()),
            ids,
            list(_LEFT),
        )


def record(session: Session | Cursor, outcomes: Iterable[Outcome], policy: RetryPolicy) -> None:
    """Write outcomes as they come back. `sent`, the common case, is one UPDATE for the
    lot; the rarer outcomes go row by row."""
    cursor = Cursor.of(session)
    moment = utc_now()
    now = cursor.stamp(moment)
    outcomes = list(outcomes)
    sent = [o.delivery_id for o in outcomes if o.kind == "sent"]
    if sent:
        cursor.count(
            "UPDATE deliveries SET state = 'sent', sent_at = ?, updated_at = ?, last_code = 250,"
            " last_error = NULL, attempts = attempts + 1 WHERE id IN ?",
            now,
            now,
            sent,
        )
    for outcome in outcomes:
        if outcome.kind == "sent" and outcome.provider_id:
            cursor.count(
                "UPDATE deliveries SET provider_id = ? WHERE id = ?",
                outcome.provider_id[:200],
                outcome.delivery_id,
            )
    release(cursor, [o.delivery_id for o in outcomes if o.kind == "requeue"])
    too_old = cursor.stamp(moment - policy.give_up_after)
    for outcome in outcomes:
        if outcome.kind in ("sent", "requeue"):
            continue
        found = cursor.rows(
            "SELECT attempts, email_key, subscriber_id FROM deliveries WHERE id = ?",
            outcome.delivery_id,
        )
        if not found:
            continue
        attempts, email_key, subscriber_id = found[0]
        state = "unknown" if outcome.kind == "unknown" else "failed"
        next_attempt = None
        if outcome.kind == "deferred":
            # Deferred until the row is older than the retry window, failed after.
            state = "deferred"
            next_attempt = cursor.stamp(policy.next_attempt(attempts + 1, moment))
        cursor.count(
            "UPDATE deliveries SET updated_at = ?, last_code = ?, last_error = ?,"
            " attempts = attempts + 1, next_attempt_at = COALESCE(?, next_attempt_at),"
            " state = CASE WHEN ? = 'deferred' AND created_at < ? THEN 'failed' ELSE ? END"
            " WHERE id = ?",
            now,
            outcome.code,
            stored(strip_controls(outcome.error or ""), 1000) or None,
            next_attempt,
            state,
            too_old,
            state,
            outcome.delivery_id,
        )
        if outcome.no_such_user:
            lifecycle.bounce(cursor, email_key, subscriber_id, now)


def waiting(session: Session, issue_id: int, now: datetime) -> int:
    """Rows a send would take now: queued, due for a retry, or left by a stopped run."""
    return int(
        session.exec(
            select(sa.func.count())
            .select_from(Delivery)
            .where(
                col(Delivery.issue_id) == issue_id,
                sa.or_(
                    col(Delivery.state).in_(["queued", "claimed", "sending"]),
                    sa.and_(
                        col(Delivery.state) == "deferred",
                        col(Delivery.next_attempt_at) <= now,
                    ),
                ),
            )
        ).one()
    )


def skip_waiting(session: Session, issue_id: int, reason: str) -> int:
    """Rows not yet taken that will never go (a welcome switched off): `skipped`, with why.
    How many; does not commit."""
    result = session.execute(
        sa.update(Delivery)
        .where(col(Delivery.issue_id) == issue_id, col(Delivery.state).in_(["queued", "deferred"]))
        .values(state="skipped", updated_at=utc_now(), last_error=reason)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def returned(cursor: Cursor, row_id: int, state: str, now: datetime) -> None:
    """A message accepted, then come back (`bounced`) or complained of: the row says so.
    A row still open is left to its send."""
    cursor.count(
        "UPDATE deliveries SET state = ?, updated_at = ? WHERE id = ? AND state IN ?",
        state,
        cursor.stamp(now),
        row_id,
        ["sent", "unknown", "bounced", "deferred", "failed"],
    )


def unreturned(cursor: Cursor, row_id: int, now: datetime) -> None:
    """A bounce read again as no bounce (bounces reprocess): the row was delivered after all."""
    cursor.count(
        "UPDATE deliveries SET state = 'sent', updated_at = ? WHERE id = ? AND state = 'bounced'",
        cursor.stamp(now),
        row_id,
    )


def counts(session: Session, issue_id: int) -> dict[str, int]:
    found = dict(
        session.exec(
            select(Delivery.state, sa.func.count())
            .where(col(Delivery.issue_id) == issue_id)
            .group_by(col(Delivery.state))
        ).all()
    )
    return {state: int(found.get(state, 0)) for state in STATES}


def rows(session: Session, issue_id: int, state: str | None = None) -> list[Delivery]:
    statement = select(Delivery).where(col(Delivery.issue_id) == issue_id)
    if state:
        statement = statement.where(col(Delivery.state) == state)
    return list(session.exec(statement.order_by(col(Delivery.id))).all())


def resolve(session: Session, issue_id: int, *, resend: bool) -> int:
    """Settle `unknown` rows: send them again (the recipient may get two) or mark them sent
    (they may have got none). Commits."""
    values: dict[str, object] = {"updated_at": utc_now()}
    values |= {"state": "queued"} if resend else {"state": "sent", "sent_at": utc_now()}
    result = session.execute(
        sa.update(Delivery)
        .where(col(Delivery.issue_id) == issue_id, col(Delivery.state) == "unknown")
        .values(**values)
    )
    issue = session.get(ApprovedIssue, issue_id)
    if issue is not None and resend:
        issue.finished_at = None
        session.add(issue)
    session.commit()
    return int(getattr(result, "rowcount", 0) or 0)


RESENDABLE = ("failed", "deferred", "unknown")


def resend(
    session: Session, issue_id: int, newsletter: str, state: str, *, apply: bool
) -> tuple[int, list[tuple[str, str]]]:
    """Rows in `state` queued again for the next send (`failed` after the cause was fixed,
    `deferred` now rather than at their retry time, `unknown` knowing some may get two):
    (how many, and who was left out and why: suppressed or no longer subscribed since).
    Commits when `apply`; otherwise changes nothing."""
    rows = session.exec(
        select(Delivery).where(col(Delivery.issue_id) == issue_id, col(Delivery.state) == state)
    ).all()
    blocked = lifecycle.suppressed_among(session, [row.email_key for row in rows])
    active = set(
        session.exec(
            select(Subscription.subscriber_id).where(
                Subscription.newsletter == newsletter, Subscription.status == "active"
            )
        ).all()
    )
    left_out: list[tuple[str, str]] = []
    chosen: list[int] = []
    for row in rows:
        if row.email_key in blocked:
            left_out.append((row.email, "suppressed"))
        elif row.subscriber_id not in active:
            left_out.append((row.email, "no longer subscribed"))
        elif row.id is not None:
            chosen.append(row.id)
    if apply and chosen:
        session.execute(
            sa.update(Delivery)
            .where(col(Delivery.id).in_(chosen))
            .values(state="queued", next_attempt_at=None, claimed_by=None, updated_at=utc_now())
        )
        issue = session.get(ApprovedIssue, issue_id)
        if issue is not None:
            issue.finished_at = None
            session.add(issue)
        session.commit()
    return len(chosen), left_out


def finish_if_done(session: Session, issue: ApprovedIssue) -> bool:
    """Mark the issue finished when no row is left queued, claimed, sending or deferred;
    whether it is. Commits the mark."""
    assert issue.id is not None
    tally = counts(session, issue.id)
    if issue.enqueued_at is not None and not any(tally[state] for state in OPEN):
        if issue.finished_at is None:
            issue.finished_at = utc_now()
            session.add(issue)
            session.commit()
        return True
    return False
