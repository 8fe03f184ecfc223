"""The delivery ledger: one row per (issue, recipient), and the only truth about a send.

States:

    queued ──claim──▶ sending ──250──▶ sent
                         │
                         ├─ 4xx, or connection lost before the final dot ──▶ deferred
                         │      (retried with exponential backoff and jitter; failed once
                         │       the row is older than the retry window)
                         ├─ 5xx ──▶ failed   (5.1.x, "no such user", also suppresses)
                         ├─ lost after the final dot, or no reply ──▶ unknown
                         └─ the connection, not the recipient, failed (421, 454, refused
                            connection) ──▶ queued again, nobody blamed

    skipped: unsubscribed, erased or suppressed after the send began: nothing more is sent.

A batch is committed as `sending` before any of it goes out, and each outcome right after
the server's reply. So after a crash exactly the rows left in `sending` are in doubt: the
next run (which takes the issue's run lock, so the crashed one is certainly gone) turns them
into `unknown`, and `newsletter deliveries resolve` settles them by resending or marking
them sent. Nothing else is ever sent twice, and nothing is skipped: an issue is finished only
when no row is queued, sending or deferred.

The audience is written once, when the send starts (`issues.enqueued_at`): active
subscriptions of the newsletter, minus suppressed addresses, one row per normalised address.
Later subscribers wait for the next issue.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import sqlalchemy as sa
from sqlmodel import Session, SQLModel, col, select

from newsletter.audience.subscribers import key_hash, set_status
from newsletter.models import ApprovedIssue, Delivery, Subscriber, Subscription, Suppression

States = Literal["queued", "sending", "sent", "deferred", "failed", "unknown", "skipped"]
STATES: tuple[States, ...] = (
    "queued",
    "sending",
    "sent",
    "deferred",
    "failed",
    "unknown",
    "skipped",
)
OPEN: tuple[States, ...] = ("queued", "sending", "deferred")
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


Kind = Literal["sent", "deferred", "failed", "unknown", "requeue"]


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    kind: Kind
    code: int | None = None
    error: str | None = None

    @property
    def no_such_user(self) -> bool:
        return self.kind == "failed" and bool(_NO_SUCH_USER.search(self.error or ""))


def _now() -> datetime:
    return datetime.now(UTC)


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
        hashes = {key_hash(p.email_key): p for p in people}
        blocked = set(
            session.exec(
                select(Suppression.key_hash).where(col(Suppression.key_hash).in_(list(hashes)))
            ).all()
        )
        for digest, person in hashes.items():
            if digest not in blocked:
                yield person


def enqueue(session: Session, issue: ApprovedIssue) -> int:
    """Write the audience to the ledger, once, in one transaction. The issue's row is
    locked first (PostgreSQL), so senders starting together write it once between them."""
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
    now = _now()
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
    """Rows a stopped sender left in `sending` become `unknown`. Without `alive`, every such
    row: call it so only while holding the issue's run lock exclusively, when no other
    process can still be sending them. With `alive` (senders sharing the issue), only the
    rows of claimants it reports gone, and rows no sender claimed by name."""
    where = [col(Delivery.issue_id) == issue_id, col(Delivery.state) == "sending"]
    if alive is not None:
        claimants = session.exec(select(Delivery.claimed_by).where(*where).distinct()).all()
        gone = [c for c in claimants if c is not None and not alive(c)]
        anonymous = None in claimants
        if not gone and not anonymous:
            session.commit()
            return 0
        chosen = col(Delivery.claimed_by).in_(gone)
        where.append(sa.or_(chosen, col(Delivery.claimed_by).is_(None)) if anonymous else chosen)
    result = session.execute(
        sa.update(Delivery)
        .where(*where)
        .values(state="unknown", updated_at=_now(), last_error="the sending process stopped")
    )
    session.commit()
    return int(getattr(result, "rowcount", 0) or 0)


def claim(
    session: Session, issue_id: int, newsletter: str, limit: int, claimed_by: str | None = None
) -> tuple[list[Claimed], int]:
    """Take up to `limit` due rows and commit them as `sending` before anything is sent.
    Rows of people who unsubscribed, were erased or suppressed since are `skipped`.
    On PostgreSQL, FOR UPDATE SKIP LOCKED lets several senders claim side by side."""
    now = _now()
    table = SQLModel.metadata.tables["deliveries"]
    columns = (table.c.id, table.c.subscriber_id, table.c.email, table.c.email_key, table.c.name)
    # Two queries, not one with OR: each walks the (issue_id, state, id) index in order, so a
    # claim costs the same at the end of a million-row send as at its start.
    rows = list(
        session.execute(
            sa.select(*columns)
            .where(table.c.issue_id == issue_id, table.c.state == "queued")
            .order_by(table.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
    )
    if len(rows) < limit:
        rows += session.execute(
            sa.select(*columns)
            .where(
                table.c.issue_id == issue_id,
                table.c.state == "deferred",
                table.c.next_attempt_at <= now,
            )
            .order_by(table.c.id)
            .limit(limit - len(rows))
            .with_for_update(skip_locked=True)
        ).all()
    if not rows:
        session.commit()
        return [], 0
    ids = [r.subscriber_id for r in rows if r.subscriber_id is not None]
    # The status is filtered here, not in SQL: given `status = 'active'`, SQLite's planner
    # prefers the status index and scans every active subscription to find these few.
    active = {
        subscriber_id: token_id
        for subscriber_id, status, token_id in session.exec(
            select(Subscription.subscriber_id, Subscription.status, Subscriber.token_id)
            .join(Subscriber, col(Subscriber.id) == col(Subscription.subscriber_id))
            .where(col(Subscription.subscriber_id).in_(ids), Subscription.newsletter == newsletter)
        ).all()
        if status == "active"
    }
    hashes = {key_hash(r.email_key): r for r in rows}
    blocked = set(
        session.exec(
            select(Suppression.key_hash).where(col(Suppression.key_hash).in_(list(hashes)))
        ).all()
    )
    claimed = [
        Claimed(r.id, r.subscriber_id, r.email, r.email_key, r.name, active[r.subscriber_id])
        for digest, r in hashes.items()
        if r.subscriber_id in active and digest not in blocked
    ]
    taken = {c.id for c in claimed}
    skipped = [r.id for r in rows if r.id not in taken]
    _set_state(session, [c.id for c in claimed], "sending", now, claimed_by=claimed_by)
    _set_state(session, skipped, "skipped", now)
    session.commit()
    return claimed, len(skipped)


def _set_state(
    session: Session, ids: list[int], state: str, now: datetime, **values: object
) -> None:
    if ids:
        session.execute(
            sa.update(Delivery)
            .where(col(Delivery.id).in_(ids))
            .values(state=state, updated_at=now, **values)
        )


def record(session: Session, outcomes: Iterable[Outcome], policy: RetryPolicy) -> None:
    """Write outcomes as they come back, in one commit. `sent`, the common case, is one
    UPDATE for the lot; the rarer outcomes go row by row."""
    now = _now()
    outcomes = list(outcomes)
    sent = [o.delivery_id for o in outcomes if o.kind == "sent"]
    if sent:
        session.execute(
            sa.update(Delivery)
            .where(col(Delivery.id).in_(sent))
            .values(
                state="sent",
                sent_at=now,
                updated_at=now,
                last_code=250,
                last_error=None,
                attempts=Delivery.attempts + 1,
            )
        )
    requeued = [o.delivery_id for o in outcomes if o.kind == "requeue"]
    _set_state(session, requeued, "queued", now)
    for outcome in outcomes:
        if outcome.kind in ("sent", "requeue"):
            continue
        # populate_existing: the set-based UPDATEs above bypass the identity map, so a row
        # loaded by an earlier call must be read afresh.
        row = session.get(Delivery, outcome.delivery_id, populate_existing=True)
        if row is None:
            continue
        row.updated_at = now
        row.last_code = outcome.code
        row.last_error = (outcome.error or "")[:1000] or None
        row.attempts += 1
        if outcome.kind == "deferred":
            if now - row.created_at > policy.give_up_after:
                row.state = "failed"
            else:
                row.state = "deferred"
                row.next_attempt_at = policy.next_attempt(row.attempts, now)
        elif outcome.kind == "failed":
            row.state = "failed"
            if outcome.no_such_user:
                _bounce(session, row)
        else:
            row.state = "unknown"
        session.add(row)
    session.commit()


def _bounce(session: Session, row: Delivery) -> None:
    digest = key_hash(row.email_key)
    if session.get(Suppression, digest) is None:
        session.add(Suppression(key_hash=digest, email=row.email_key, reason="bounced"))
    if row.subscriber_id is not None:
        for subscription in session.exec(
            select(Subscription).where(Subscription.subscriber_id == row.subscriber_id)
        ).all():
            if subscription.status in ("active", "pending"):
                set_status(subscription, "bounced")
                session.add(subscription)


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
    (they may have got none)."""
    values: dict[str, object] = {"updated_at": _now()}
    values |= {"state": "queued"} if resend else {"state": "sent", "sent_at": _now()}
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


def finish_if_done(session: Session, issue: ApprovedIssue) -> bool:
    assert issue.id is not None
    tally = counts(session, issue.id)
    if issue.enqueued_at is not None and not any(tally[state] for state in OPEN):
        if issue.finished_at is None:
            issue.finished_at = _now()
            session.add(issue)
            session.commit()
        return True
    return False
