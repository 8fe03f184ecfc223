"""A subscription's states and the suppression list: the one module that moves them.

A subscription is one person's membership of one newsletter:

        the form (double opt-in)                    an import, `subscribers add`
                  │                                              │
                  ▼                                              ▼
              pending ──confirm: the person's POST from the ───▶ active
                  │      confirmation page                       │
        ┌─────────┴──────────────────┬───────────────────────────┤
        ▼                            ▼                           ▼
   unsubscribed                 complained                    bounced
   (the link, one-click POST,   (an ARF complaint: this       (a 5.1.x during the send, or
   mailto:, preferences,        list; the address             a hard bounce heard back:
   `subscribers unsubscribe`)   suppressed `complained`)      every list; the address
        │                            │                        suppressed `bounced`)
        │                            │                           │
        ├── the person's confirmation, through a link made after they left ─┤ (a bounced
        │                            │                           │           suppression
        │                            └── only the operator: `subscribers     goes with it)
        │                                unsuppress` (logged) ───┤
        └────────────── the operator's logged --reopen ──────────┴──▶ what it was before

`OPEN` (active, pending) are the states a close moves from, and a close keeps which one
(`closed_from`), so a lift restores exactly what its own suppression closed: a pending
sign-up comes back pending, and a list another suppression closed stays closed. `CLOSED`
(unsubscribed, bounced, complained) are left only by the person's own confirmation (never a
complaint: a complainer is never mailed from the form), or the operator's `--reopen` and
`unsuppress`, never by an import or the form.

The suppression list, by the address's hash, overrides every state: nobody on it is mailed
or added. Its reasons: `manual` (the operator), `bounced` (what mail told us about the
address; the person's own confirmation lifts it, and so may the operator), `complained`
(the person told their mailbox provider this is spam: only the operator lifts it, logged),
`erased` (hash only; what stays of an erased person, whatever the reason was before;
absolute: nothing lifts it).

Who moves them: the web routes (subscribe, confirm, unsubscribe, preferences), imports and
the CLI through audience/subscribers.py; the send (delivery/ledger.record: a 5.1.x
bounces); the bounce policy (feedback/policy.py: hard bounces, complaints, mailto
unsubscribes). Each move is a statement or two in the caller's transaction and nothing here
commits, so a crash leaves the move together with what caused it (a ledger outcome, a
stored report), or neither. Each move comes in the form its callers need: on a Session for
one person at a time (the web, the CLI), on the driver cursor (db.Cursor) for the paths
that run once per message (the send's writer, the bounce policy).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import Any, Literal, cast

import sqlalchemy as sa
from sqlmodel import Session, col, select

from newsletter.dates import utc_now
from newsletter.db import Cursor
from newsletter.errors import UsageError
from newsletter.models import Subscriber, Subscription, Suppression, SuppressionLift

Status = Literal["pending", "active", "unsubscribed", "bounced", "complained"]
STATUSES: tuple[Status, ...] = ("pending", "active", "unsubscribed", "bounced", "complained")
# The states a close (unsubscribe, bounce, complaint) moves a subscription from.
OPEN: tuple[Status, ...] = ("active", "pending")
# Statuses a person can only leave by their own action, never by an import or an admin add.
CLOSED: frozenset[str] = frozenset({"unsubscribed", "bounced", "complained"})
# Subscriptions a person may reopen through the double opt-in (never a complaint's).
REOPENED_BY_PERSON: tuple[Status, ...] = ("pending", "unsubscribed", "bounced")
# Suppressions the person lifts by confirming again: a bounce, which their own click
# disproves; never a complaint (only the operator lifts one), the operator's own (manual)
# or an erasure.
SELF_LIFTED = ("bounced",)
# Suppressions the operator may lift (`subscribers unsuppress`, `bounces reprocess`).
LIFTABLE = ("bounced", "complained")

log = logging.getLogger("newsletter.audience.subscribers")


def key_hash(key: str) -> str:
    """The suppression list's key: an address's normalised key, hashed (an erased person
    leaves only this)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def check_status(value: str | None) -> Status | None:
    if value is None:
        return None
    if value not in STATUSES:
        raise UsageError(f"unknown status {value!r}: use one of {', '.join(STATUSES)}")
    return value


# Suppression, one address at a time (Session) ---------------------------------------------


def suppression_of(session: Session, email_key: str) -> Suppression | None:
    return session.get(Suppression, key_hash(email_key))


def suppress(session: Session, email_key: str, reason: str) -> None:
    """Never mail this address again: suppress_row's rule (an existing suppression keeps
    its reason, but a complaint outranks a bounce), written once for both paths."""
    session.flush()
    cursor = Cursor.of(session)
    suppress_row(cursor, email_key, reason, cursor.stamp(utc_now()))
    session.expire_all()  # what the ORM holds of the row is read again


def erased(session: Session, email_key: str) -> None:
    """What stays of an erased person: their suppression, by hash only and `erased` whatever
    it was before (a bounced one would let the person's confirmation, or the operator's
    lift, undo the erasure), so that no form, import or lift adds them again; the lifts'
    record of them loses the address too."""
    existing = suppression_of(session, email_key)
    if existing is None:
        session.add(Suppression(key_hash=key_hash(email_key), email=None, reason="erased"))
    else:
        existing.email, existing.reason = None, "erased"
        session.add(existing)
    session.execute(
        sa.update(SuppressionLift)
        .where(col(SuppressionLift.key_hash) == key_hash(email_key))
        .values(email=None)
    )


def suppressed_among(session: Session, email_keys: list[str]) -> set[str]:
    """Which of these addresses are suppressed, in one statement."""
    hashes = {key_hash(key): key for key in email_keys}
    if not hashes:
        return set()
    postgresql = session.get_bind().dialect.name == "postgresql"
    found = session.exec(
        select(Suppression.key_hash).where(
            among(col(Suppression.key_hash), list(hashes), postgresql)
        )
    )
    return {hashes[digest] for digest in found}


def among(column: Any, values: list[Any], postgresql: bool) -> sa.ColumnElement[bool]:
    """`column IN (values)`; on PostgreSQL `= ANY(array)`: one parameter, so the statement
    stays short (psycopg parses each statement's text, and a thousand placeholders cost
    more than the lookup)."""
    if postgresql:
        condition = column == sa.any_(sa.bindparam(None, values, type_=sa.ARRAY(column.type)))
    else:
        condition = column.in_(values)
    return cast(sa.ColumnElement[bool], condition)


# A subscription, one person at a time (Session) -------------------------------------------


def set_status(subscription: Subscription, status: Status) -> None:
    now = utc_now()
    if status in CLOSED and subscription.status in OPEN:
        subscription.closed_from = subscription.status
    subscription.status = status
    if status == "active" and subscription.confirmed_at is None:
        subscription.confirmed_at = now
    if status in CLOSED:
        subscription.unsubscribed_at = subscription.unsubscribed_at or now


def reopen(subscription: Subscription, status: Status = "active", *, consent: bool = True) -> None:
    """A closed subscription open again: by the person's own confirmation, or the operator's
    --reopen. The time they left is forgotten; an active one is confirmed now, unless this
    is a lift (`consent` False), which gives back the consent the person gave before."""
    subscription.status = status
    subscription.unsubscribed_at = None
    subscription.closed_from = None
    if status == "active" and (consent or subscription.confirmed_at is None):
        subscription.confirmed_at = utc_now()


def subscription_of(
    session: Session, subscriber: Subscriber, newsletter: str
) -> Subscription | None:
    return session.exec(
        select(Subscription).where(
            Subscription.subscriber_id == subscriber.id, Subscription.newsletter == newsletter
        )
    ).first()


def unsubscribe(session: Session, subscriber_id: int, newsletter: str) -> bool:
    """Idempotent: True when this call changed something. The same move as a provider's
    unsubscribe event (close): only an open subscription closes, so a bounced or
    complained one keeps saying why it closed."""
    session.flush()
    cursor = Cursor.of(session)
    changed = close(cursor, subscriber_id, "unsubscribed", cursor.stamp(utc_now()), newsletter)
    session.expire_all()
    return changed > 0


def confirm(session: Session, person: Subscriber, newsletter: str, issued_at: datetime) -> bool:
    """Double opt-in: pending becomes active, and a person who left (unsubscribed, or
    closed by a bounce or a complaint) is active again, but only through a link made after
    they left (an older confirm link still in their inbox must not undo their leaving); a
    bounce or complaint suppression goes with it, since the person's own click proves the
    address works and that they want the mail. Other suppressions stay absolute."""
    subscription = subscription_of(session, person, newsletter)
    if subscription is None:
        return False
    suppression = suppression_of(session, person.email_key)
    if suppression is not None and (
        suppression.reason not in SELF_LIFTED or suppression.created_at.astimezone(UTC) >= issued_at
    ):
        return False
    if subscription.status in CLOSED:
        left = subscription.unsubscribed_at
        if left is not None and left.astimezone(UTC) >= issued_at:
            return False
    if suppression is not None:
        log.info("suppression (%s) lifted by the person's confirmation", suppression.reason)
        session.delete(suppression)
    if subscription.status in REOPENED_BY_PERSON:
        reopen(subscription)
        session.add(subscription)
        session.flush()
    return subscription.status == "active"


def unsuppress(session: Session, email_key: str, *, by: str, why: str) -> SuppressionLift:
    """The operator's (or a reprocess's) way back for an address mail wrongly condemned: a
    `bounced` or `complained` suppression lifted, and exactly the subscriptions it closed
    (`bounced` or `complained` since it was made) back to what they were before (a pending
    sign-up stays pending, unconfirmed); recorded with who and why. Never an erasure, nor
    an operator's own `manual` suppression. Does not commit."""
    suppression = suppression_of(session, email_key)
    if suppression is None:
        raise UsageError(f"{email_key} is not suppressed")
    if suppression.reason not in LIFTABLE:
        what = (
            "an erasure is for good"
            if suppression.reason == "erased"
            else (f"it is suppressed {suppression.reason!r}, not for a bounce or a complaint")
        )
        raise UsageError(f"{email_key}: not lifted: {what}")
    if not why.strip():
        raise UsageError("--reason is empty: say why the suppression goes (it is logged)")
    lift = SuppressionLift(
        key_hash=key_hash(email_key),
        email=email_key,
        reason=suppression.reason,
        suppressed_at=suppression.created_at,
        lifted_by=by,
        why=" ".join(why.split())[:2000],
    )
    session.add(lift)
    session.delete(suppression)
    person = session.exec(select(Subscriber).where(Subscriber.email_key == email_key)).first()
    if person is not None:
        for subscription in closed_by(session, person, suppression):
            reopen(subscription, restored(subscription), consent=False)
            session.add(subscription)
    log.warning(
        "lifted %s's %s suppression (by %s): %s", email_key, suppression.reason, by, lift.why
    )
    session.flush()
    return lift


def closed_by(session: Session, person: Subscriber, suppression: Suppression) -> list[Subscription]:
    """The subscriptions this suppression closed: of its reason, closed when it was made or
    since (a bounce and a complaint stamp both with one time). One closed by an earlier
    suppression, since lifted, is not this one's to reopen."""
    made = suppression.created_at.astimezone(UTC)
    return [
        subscription
        for subscription in session.exec(
            select(Subscription).where(
                Subscription.subscriber_id == person.id,
                Subscription.status == suppression.reason,
            )
        ).all()
        if subscription.unsubscribed_at is not None
        and subscription.unsubscribed_at.astimezone(UTC) >= made
    ]


def restored(subscription: Subscription) -> Status:
    """What a lift gives back: the status the close moved it from; for a close made before
    that was kept, active if it had been confirmed, else pending."""
    if subscription.closed_from in OPEN:
        return subscription.closed_from
    return "active" if subscription.confirmed_at is not None else "pending"


def lifts_of(session: Session, email_key: str) -> list[SuppressionLift]:
    return list(
        session.exec(
            select(SuppressionLift)
            .where(SuppressionLift.key_hash == key_hash(email_key))
            .order_by(col(SuppressionLift.id))
        ).all()
    )


# The per-message paths (db.Cursor; `now` stamped for the database: Cursor.stamp) ----------


def suppress_row(cursor: Cursor, email_key: str, reason: str, now: object) -> None:
    """Never mail this address again; an existing suppression keeps its reason, but a
    complaint outranks a bounce (only the operator lifts it, and a bounced suppression the
    person could lift by confirming)."""
    cursor.count(
        "INSERT INTO suppressions (key_hash, email, reason, created_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (key_hash) DO UPDATE SET reason = excluded.reason,"
        " created_at = excluded.created_at"
        " WHERE excluded.reason = 'complained' AND suppressions.reason = 'bounced'",
        key_hash(email_key),
        email_key,
        reason,
        now,
    )


def close(
    cursor: Cursor, subscriber_id: int, status: Status, now: object, newsletter: str | None
) -> int:
    """The person's open subscription to `newsletter` (every one, when None) closed; how
    many."""
    return cursor.count(
        "UPDATE subscriptions SET status = ?, closed_from = status,"
        " unsubscribed_at = COALESCE(unsubscribed_at, ?)"
        " WHERE subscriber_id = ? AND status IN ?"
        + (" AND newsletter = ?" if newsletter is not None else ""),
        status,
        now,
        subscriber_id,
        list(OPEN),
        *([newsletter] if newsletter is not None else []),
    )


def bounce(cursor: Cursor, email_key: str, subscriber_id: int | None, now: object) -> None:
    """A dead address (a 5.1.x during the send, or a hard bounce heard back later): it is
    suppressed, and the person's open subscriptions, on every list, are bounced."""
    suppress_row(cursor, email_key, "bounced", now)
    if subscriber_id is not None:
        close(cursor, subscriber_id, "bounced", now, None)


def complain(
    cursor: Cursor, email_key: str | None, subscriber_id: int | None, newsletter: str, now: object
) -> None:
    """A complaint is about one list: it is closed, and the address suppressed."""
    if subscriber_id is not None:
        close(cursor, subscriber_id, "complained", now, newsletter)
    if email_key is not None:
        suppress_row(cursor, email_key, "complained", now)
