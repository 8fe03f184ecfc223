"""How many messages a newsletter may send today: `[delivery] daily_limit`, and the warm-up
ramp of a new sending domain or IP (`warmup`: the first day's count, multiplied by
`warmup_factor` each day after the first send, up to the limit). Days are the newsletter's
(its time zone); what counts is every message of the newsletter handed over today (issues
and welcomes: `sent_at`). A send that reaches the quota stops cleanly, the rest queued,
and `send --due` goes on the next day (providers hold new accounts to exactly this, and
punish a sender that jumps past it). Newsletters that send from one domain or IP name each
other in `quota_shared_with` and share one count and one warm-up: a receiver's reputation
is the domain's, not the list's."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, time

import sqlalchemy as sa
from sqlmodel import Session, col, select

from newsletter.config import Config
from newsletter.db import Cursor, read_time
from newsletter.models import ApprovedIssue, Delivery


def day_quota(config: Config, first_day: date | None, today: date) -> int | None:
    """Today's quota, or None for no limit."""
    limit = config.daily_limit
    if config.warmup is None:
        return limit
    day = 0 if first_day is None else max((today - first_day).days, 0)
    ramp = config.warmup * config.warmup_factor ** min(day, 60)
    return int(min(ramp, limit)) if limit is not None else int(ramp)


def pool(config: Config) -> list[str]:
    """The newsletters that share this one's quota and warm-up (`quota_shared_with`: the
    same sending domain or IP), this one included, in one order for every member."""
    return sorted({config.newsletter_id, *config.quota_shared_with})


def quota_left(session: Session, config: Config, now: datetime) -> int | None:
    """Messages the newsletter may still hand over today; None for no limit."""
    if config.daily_limit is None and config.warmup is None:
        return None
    zone = config.timezone
    today = now.astimezone(zone).date()
    start = datetime.combine(today, time(0), tzinfo=zone)
    ours = select(ApprovedIssue.id).where(col(ApprovedIssue.newsletter).in_(pool(config)))
    sent_today, first = session.exec(
        select(
            sa.func.count().filter(col(Delivery.sent_at) >= start),
            sa.func.min(Delivery.sent_at),
        ).where(col(Delivery.issue_id).in_(ours), col(Delivery.sent_at).is_not(None))
    ).one()
    first_time = read_time(first)
    first_day = first_time.astimezone(zone).date() if first_time is not None else None
    quota = day_quota(config, first_day, today)
    return None if quota is None else max(quota - int(sent_today or 0), 0)


def claimable(cursor: Cursor, config: Config, now: datetime) -> int | None:
    """What a claim may take now, decided under a lock in the claim's own transaction, so
    that two sends running at once share one quota: the day's quota less what every run
    handed over today and what every run holds claimed or sending (this one's included).
    The lock: on PostgreSQL a transaction advisory lock on the newsletter's pace; on SQLite
    the database's write lock, taken by a write before the count (a second sender waits
    for the first's commit, which holds its claim)."""
    if config.daily_limit is None and config.warmup is None:
        return None
    members = pool(config)
    if cursor.sqlite:
        cursor.count("UPDATE deliveries SET id = id WHERE id = -1")
    else:
        digest = hashlib.sha256(("pace\x00" + "\x00".join(members)).encode()).digest()
        cursor.rows(
            "SELECT pg_advisory_xact_lock(?)", int.from_bytes(digest[:8], "big", signed=True)
        )
    zone = config.timezone
    today = now.astimezone(zone).date()
    start = cursor.stamp(datetime.combine(today, time(0), tzinfo=zone))
    (row,) = cursor.rows(
        "SELECT SUM(CASE WHEN d.sent_at >= ? THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN d.state IN ('claimed', 'sending') THEN 1 ELSE 0 END), MIN(d.sent_at)"
        " FROM deliveries d JOIN issues i ON i.id = d.issue_id WHERE i.newsletter IN ?"
        " AND (d.sent_at IS NOT NULL OR d.state IN ('claimed', 'sending'))",
        start,
        members,
    )
    sent_today, in_flight, first = row
    first_time = read_time(first)
    first_day = first_time.astimezone(zone).date() if first_time is not None else None
    quota = day_quota(config, first_day, today)
    if quota is None:
        return None
    return max(quota - int(sent_today or 0) - int(in_flight or 0), 0)
