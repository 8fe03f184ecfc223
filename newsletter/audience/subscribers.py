"""Subscribers: who may be mailed, for which newsletter, and who never again.

A subscriber is a person (address as given, a normalised key, name, source, free
attributes); a subscription is their membership of one newsletter with its own status;
the suppression list overrides everything. The statuses, the suppression reasons and every
move between them are audience/lifecycle.py's, re-exported here for the callers that deal
with people (the web routes, the CLI, imports).

Addresses are checked with email-validator without DNS. The key lower-cases the whole
address and IDNA-encodes the domain, so `JOHN@Example.COM` and `john@example.com` are one
person. An address or name carrying a line break, raw or percent-encoded, is refused or
cleaned here, before it can come near a mail header.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import unquote

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from sqlmodel import Session, SQLModel, col, select

from newsletter import registry
from newsletter.audience import lifecycle
from newsletter.audience.lifecycle import CLOSED as CLOSED
from newsletter.audience.lifecycle import REOPENED_BY_PERSON as REOPENED_BY_PERSON
from newsletter.audience.lifecycle import SELF_LIFTED as SELF_LIFTED
from newsletter.audience.lifecycle import STATUSES as STATUSES
from newsletter.audience.lifecycle import Status as Status
from newsletter.audience.lifecycle import among, set_status
from newsletter.audience.lifecycle import check_status as check_status
from newsletter.audience.lifecycle import confirm as confirm
from newsletter.audience.lifecycle import key_hash as key_hash
from newsletter.audience.lifecycle import subscription_of as subscription_of
from newsletter.audience.lifecycle import unsubscribe as unsubscribe
from newsletter.audience.tokens import Token, signed_url
from newsletter.config import Config
from newsletter.dates import utc_now
from newsletter.errors import InvalidAddress, NotFoundError
from newsletter.models import (
    ApprovedIssue,
    Delivery,
    FeedbackReport,
    IssueLink,
    ReaderClick,
    Subscriber,
    Subscription,
    new_token_id,
)
from newsletter.untrusted import ENCODED_BREAK, form_name, has_control
from newsletter.untrusted import clean_name as clean_name


@dataclass(frozen=True)
class Address:
    email: str
    key: str


def parse_address(raw: str) -> Address:
    text = raw.strip()
    if not text:
        raise InvalidAddress("empty address")
    if has_control(text) or has_control(unquote(text)) or ENCODED_BREAK.search(text):
        raise InvalidAddress("contains a line break or control character")
    if len(text) > 254:
        raise InvalidAddress("longer than 254 characters")
    local, _, domain = text.rpartition("@")
    if len(local) <= 64 and _DOT_ATOM.match(local):
        # The common case: a plain ASCII local part, always valid (RFC 5322 dot-atom), and a
        # domain that a list repeats thousands of times, validated once. Anything else, and
        # any length email-validator would measure differently, takes the full path.
        checked = _checked_domain(domain)
        if isinstance(checked, str):
            raise InvalidAddress(checked)
        unicode_domain, ascii_domain = checked
        if len(local) + 1 + max(len(unicode_domain.encode()), len(ascii_domain)) <= 254:
            return Address(email=text, key=f"{local.lower()}@{ascii_domain.lower()}")
    try:
        valid = validate_email(text, check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidAddress(str(error)) from None
    ascii_domain = valid.ascii_domain or valid.domain
    return Address(email=text, key=f"{valid.local_part.lower()}@{ascii_domain.lower()}")


# RFC 5322 atext, dot-separated: what email-validator accepts as an unquoted ASCII local part.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")


@functools.lru_cache(maxsize=100_000)
def _checked_domain(domain: str) -> tuple[str, str] | str:
    """(domain, its IDNA ASCII form), or email-validator's reason for refusing it. Checked
    with a one-letter local part, which is always valid: the verdict is the domain's."""
    try:
        valid = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError as error:
        return str(error)
    return valid.domain, valid.ascii_domain or valid.domain


def suppress(session: Session, email: str, reason: str) -> None:
    """The operator's suppression of an address as typed (`subscribers suppress`)."""
    lifecycle.suppress(session, parse_address(email).key, reason)


def find(session: Session, email: str) -> Subscriber | None:
    try:
        key = parse_address(email).key
    except InvalidAddress:
        return None
    return session.exec(select(Subscriber).where(Subscriber.email_key == key)).first()


def require(session: Session, email: str) -> Subscriber:
    found = find(session, email)
    if found is None:
        raise NotFoundError(f"no subscriber {email}")
    return found


SubscriberChange = Literal["added", "updated", "unchanged", "suppressed", "closed", "reopened"]
log = logging.getLogger("newsletter.audience.subscribers")


@dataclass
class Entry:
    """A person to add or update: an address already parsed, a name already cleaned."""

    email: str
    key: str
    name: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)


def upsert(
    session: Session,
    newsletter: str,
    entries: list[Entry],
    *,
    source: str,
    status: Status = "active",
    reopen: bool = False,
) -> list[SubscriberChange]:
    """Add or update people and their subscriptions, one outcome per entry, with a few
    set-based statements however many entries (the CSV import sends a thousand at once).

    A suppressed address is refused ("suppressed"); a subscription its owner closed
    (unsubscribed, bounced, complained) stays closed ("closed"): only the person can reopen
    it, through the double opt-in, unless the operator says `reopen` (logged, one line per
    person). Otherwise a new person is added, and an existing one has
    their name and attributes filled in ("updated" when that changed anything)."""
    if not entries:
        return []
    keys = [entry.key for entry in entries]
    postgresql = session.get_bind().dialect.name == "postgresql"
    people = {
        person.email_key: person
        for person in session.exec(
            select(Subscriber).where(among(col(Subscriber.email_key), keys, postgresql))
        )
    }
    suppressed = lifecycle.suppressed_among(session, keys)
    ids = [p.id for p in people.values() if p.id is not None]
    memberships = {
        sub.subscriber_id: sub
        for sub in session.exec(
            select(Subscription).where(
                among(col(Subscription.subscriber_id), ids, postgresql),
                Subscription.newsletter == newsletter,
            )
        )
    }
    now = utc_now()
    outcomes: list[SubscriberChange] = []
    new_people: list[dict[str, object]] = []
    joined: list[int] = []  # people without a subscription to this newsletter yet
    for entry in entries:
        person = people.get(entry.key)
        if entry.key in suppressed:
            outcomes.append("suppressed")
            continue
        if person is None:
            new_people.append({"email": entry.email, "email_key": entry.key,
                               "name": entry.name, "attributes": entry.attributes})  # fmt: skip
            outcomes.append("added")
            continue
        assert person.id is not None
        membership = memberships.get(person.id)
        if membership is not None and membership.status in CLOSED:
            if not reopen:
                outcomes.append("closed")
                continue
            log.warning(
                "reopened %s's %s subscription to %s (was %s) by the operator's --reopen",
                person.email_key, newsletter, status, membership.status,
            )  # fmt: skip
            lifecycle.reopen(membership, status)
            session.add(membership)
            outcomes.append("reopened")
            continue
        changed = False
        if entry.name and entry.name != person.name:
            person.name, changed = entry.name, True
        merged = person.attributes | entry.attributes
        if merged != person.attributes:
            person.attributes, changed = merged, True
        if changed:
            session.add(person)
        if membership is None:
            joined.append(person.id)
            outcomes.append("added")
        elif membership.status == "pending" and status == "active":
            set_status(membership, "active")
            session.add(membership)
            outcomes.append("updated")
        else:
            outcomes.append("updated" if changed else "unchanged")
    if new_people:
        joined.extend(_insert_people(session, new_people, source, now))
    if joined:
        _insert_subscriptions(session, joined, newsletter, status, now)
    session.flush()
    return outcomes


def _insert_people(
    session: Session, rows: list[dict[str, object]], source: str, now: datetime
) -> list[int]:
    """Insert new people (email, email_key, name, attributes); their ids come back through
    RETURNING, not a second query."""
    if session.get_bind().dialect.name == "postgresql":
        # COPY, written row by row in psycopg's C code, then the ids by key: an INSERT of
        # a thousand rows costs psycopg more in building the statement than the server in
        # running it.
        driver = session.connection().connection.driver_connection
        assert driver is not None
        with driver.cursor() as cursor:
            with cursor.copy(
                "COPY subscribers (email, email_key, name, source, attributes, created_at,"
                " token_id) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(
                        (row["email"], row["email_key"], row["name"], source,
                         json.dumps(row["attributes"]), now, new_token_id())
                    )  # fmt: skip
        keys = [row["email_key"] for row in rows]
        found = session.execute(
            select(Subscriber.id).where(among(col(Subscriber.email_key), keys, True))
        )
        return [i for i in found.scalars() if i is not None]
    # Core, not the ORM's bulk path: a third of the cost per row.
    table = SQLModel.metadata.tables["subscribers"]
    full = [row | {"source": source, "created_at": now, "token_id": new_token_id()} for row in rows]
    return list(session.execute(table.insert().returning(table.c.id), full).scalars())


def _insert_subscriptions(
    session: Session, ids: list[int], newsletter: str, status: Status, now: datetime
) -> None:
    confirmed = now if status == "active" else None
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            sa.text(
                "INSERT INTO subscriptions (subscriber_id, newsletter, status, created_at,"
                " confirmed_at) SELECT id, :newsletter, :status, :now,"
                " CAST(:confirmed AS timestamptz) FROM unnest(CAST(:ids AS integer[])) AS id"
            ),
            {"ids": ids, "newsletter": newsletter, "status": status, "now": now,
             "confirmed": confirmed},
        )  # fmt: skip
        return
    session.execute(
        SQLModel.metadata.tables["subscriptions"].insert(),
        [{"subscriber_id": i, "newsletter": newsletter, "status": status, "created_at": now,
          "confirmed_at": confirmed} for i in ids],
    )  # fmt: skip


def add(
    session: Session,
    newsletter: str,
    email: str,
    *,
    name: str | None = None,
    source: str = "cli",
    status: Status = "active",
    attributes: dict[str, str] | None = None,
    reopen: bool = False,
) -> SubscriberChange:
    """One person: see upsert for the rules."""
    address = parse_address(email)
    entry = Entry(address.email, address.key, clean_name(name), dict(attributes or {}))
    return upsert(session, newsletter, [entry], source=source, status=status, reopen=reopen)[0]


def by_token(session: Session, token: Token) -> Subscriber | None:
    """The person a valid token names: by their token id, or for an unsubscribe link made
    before token ids existed, by row id, only if that row is still the person it was made
    for (`legacy_tokens`: they existed before the migration; a row id reused since is not
    theirs)."""
    if token.legacy:
        if int(token.subject) > 2**31 - 1:  # beyond any row id (and PostgreSQL's integer)
            return None
        person = session.get(Subscriber, int(token.subject))
        return person if person is not None and person.legacy_tokens else None
    return session.exec(select(Subscriber).where(Subscriber.token_id == token.subject)).first()


def erase(session: Session, email: str) -> None:
    """Delete the person's data (right to erasure) but keep their suppression entry, by
    hash only and `erased` whatever it was (lifecycle.erased), so no form, import or lift
    adds them again. No address of theirs stays in clear: the ledger's rows keep the count
    and lose the person (address, name, the server's words, which often quote the
    address), the lifts their address."""
    person = require(session, email)
    lifecycle.erased(session, person.email_key)
    erased_key = f"erased:{key_hash(person.email_key)}"
    session.execute(
        sa.update(Delivery)
        .where(
            (col(Delivery.subscriber_id) == person.id)
            | (col(Delivery.email_key) == person.email_key)
        )
        .values(email="", email_key=erased_key, name=None, last_error=None, subscriber_id=None)
    )
    session.execute(sa.delete(Subscription).where(col(Subscription.subscriber_id) == person.id))
    # Reports about them, tied to them or naming their address (the aggregates in the
    # ledger stay: its rows lose the person, not the count).
    session.execute(
        sa.delete(FeedbackReport).where(
            (col(FeedbackReport.subscriber_id) == person.id)
            | (col(FeedbackReport.recipient) == person.email_key)
        )
    )
    session.execute(sa.delete(ReaderClick).where(col(ReaderClick.subscriber_id) == person.id))
    session.delete(person)
    session.flush()


def listing(
    session: Session, newsletter: str, status: Status | None = None, *, batch: int = 1000
) -> Iterator[tuple[Subscriber, Subscription]]:
    """Every (person, subscription), by id, fetched in batches: never the whole list at once.
    The status is filtered here rather than in SQL, which would lead SQLite to scan every
    row of that status for each batch (see ledger.audience)."""
    last = 0
    while True:
        rows = session.exec(
            select(Subscriber, Subscription)
            .join(Subscription, col(Subscription.subscriber_id) == col(Subscriber.id))
            .where(Subscription.newsletter == newsletter, col(Subscription.subscriber_id) > last)
            .order_by(col(Subscription.subscriber_id))
            .limit(batch)
        ).all()
        if not rows:
            return
        yield from (row for row in rows if status is None or row[1].status == status)
        last = rows[-1][0].id or last


def counts(session: Session, newsletter: str) -> dict[str, int]:
    statement = (
        select(Subscription.status, sa.func.count())
        .where(Subscription.newsletter == newsletter)
        .group_by(col(Subscription.status))
    )
    found = dict(session.exec(statement).all())
    return {status: int(found.get(status, 0)) for status in STATUSES}


def request_subscription(
    session: Session, newsletter: str, email: str, name: str | None
) -> Subscriber | None:
    """The web form's half of the double opt-in: the person to send a confirmation to, or
    None when nothing may be sent (already active, or suppressed by the operator or an
    erasure; a person closed by a bounce or a complaint may ask again, and only their
    own click on the confirmation reopens them).

    Nothing here changes a subscription that exists: anyone can type any address into the
    form, so an unsubscribed person stays unsubscribed (no import or admin command can then
    mistake them for a pending sign-up) until their own click on the confirmation link;
    and an existing person's name is not overwritten by whatever the form said."""
    address = parse_address(email)
    suppression = lifecycle.suppression_of(session, address.key)
    if suppression is not None and suppression.reason not in SELF_LIFTED:
        return None
    person = session.exec(select(Subscriber).where(Subscriber.email_key == address.key)).first()
    if person is None:
        person = Subscriber(
            email=address.email,
            email_key=address.key,
            name=form_name(name),
            source="web",
            attributes={},
        )
        session.add(person)
        session.flush()
    subscription = subscription_of(session, person, newsletter)
    if subscription is None:
        assert person.id is not None
        session.add(Subscription(subscriber_id=person.id, newsletter=newsletter, status="pending"))
    elif subscription.status not in REOPENED_BY_PERSON:
        return None
    session.flush()
    return person


def subscriptions_of(session: Session, person: Subscriber) -> list[dict[str, str | None]]:
    """Every subscription of a person in this database, each named as its newsletter's own
    config names it (registry.py) when a command has run with it."""
    names = registry.known(session)
    rows = session.exec(
        select(Subscription)
        .where(Subscription.subscriber_id == person.id)
        .order_by(col(Subscription.newsletter))
    ).all()
    return [
        {
            "newsletter": row.newsletter,
            "name": names[row.newsletter].name if row.newsletter in names else None,
            "language": names[row.newsletter].language if row.newsletter in names else None,
            "status": row.status,
            "confirmed_at": row.confirmed_at.isoformat() if row.confirmed_at else None,
            "unsubscribed_at": row.unsubscribed_at.isoformat() if row.unsubscribed_at else None,
        }
        for row in rows
    ]


def clicks_of(session: Session, person_id: int) -> list[dict[str, str]]:
    """What this person clicked (per-subscriber tracking only; `subscribers show`)."""
    rows = session.exec(
        select(ApprovedIssue.slug, IssueLink.url, ReaderClick.clicked_at, ReaderClick.index)
        .join(ApprovedIssue, col(ApprovedIssue.id) == col(ReaderClick.issue_id))
        .join(
            IssueLink,
            (col(IssueLink.issue_id) == col(ReaderClick.issue_id))
            & (col(IssueLink.index) == col(ReaderClick.index)),
            isouter=True,
        )
        .where(col(ReaderClick.subscriber_id) == person_id)
        .order_by(col(ReaderClick.clicked_at))
    ).all()
    return [
        {"issue": slug, "url": url or "(opened)", "at": at.isoformat()} for slug, url, at, _ in rows
    ]


def profile(session: Session, config: Config, key: bytes, email: str) -> dict[str, Any]:
    """`subscribers show`: one person as this newsletter sees them, with their unsubscribe
    link, every list of theirs in the database, their suppression and its lifts, and (with
    per-reader tracking) their clicks."""
    person = require(session, email)
    subscription = subscription_of(session, person, config.newsletter_id)
    assert person.id is not None
    lists = subscriptions_of(session, person)
    blocked = lifecycle.suppression_of(session, person.email_key)
    return {
        "email": person.email,
        "name": person.name,
        "status": subscription.status if subscription else None,
        "source": person.source,
        "attributes": person.attributes,
        "created_at": person.created_at.isoformat(),
        "confirmed_at": subscription.confirmed_at.isoformat()
        if subscription and subscription.confirmed_at
        else None,
        "unsubscribed_at": subscription.unsubscribed_at.isoformat()
        if subscription and subscription.unsubscribed_at
        else None,
        "unsubscribe_url": signed_url(
            config.base_url, key, "unsubscribe", config.newsletter_id, person.token_id
        ),
        # Every list of theirs in this database, this one among them.
        "subscriptions": lists,
        "suppressed": f"{blocked.reason} since {blocked.created_at.isoformat()}"
        if blocked
        else None,
        "suppression_lifts": [
            {
                "reason": lift.reason,
                "suppressed_at": lift.suppressed_at.isoformat(),
                "lifted_at": lift.lifted_at.isoformat(),
                "by": lift.lifted_by,
                "why": lift.why,
            }
            for lift in lifecycle.lifts_of(session, person.email_key)
        ],  # fmt: skip
        # Recorded only with [tracking] per_subscriber = true (docs/privacy.md).
        "clicks": clicks_of(session, person.id),
    }
