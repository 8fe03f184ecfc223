"""Publication times and ISO weeks, always timezone-aware.

A newsletter's week is an ISO week in the newsletter's own time zone: an article posted at
23:30 UTC on a Sunday is already Monday in Kyiv and belongs to the next issue. So every range
is computed in that zone and only then converted to UTC for the database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from email.utils import parsedate_to_datetime

from newsletter.errors import UsageError

_WEEK = re.compile(r"^(\d{4})-?W(\d{1,2})$", re.IGNORECASE)
_BACK = re.compile(r"^-[0-9]{1,4}$")


@dataclass(frozen=True)
class Period:
    """Half-open [start, end) in UTC, with the label the user asked for."""

    start: datetime
    end: datetime
    label: str

    def __contains__(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def parse_datetime(text: str, default_tz: tzinfo) -> datetime | None:
    """ISO 8601 (with `Z`, an offset, or none) or RFC 2822; None when it is neither.

    A time without an offset is read in `default_tz`: a page saying "2022-12-19T10:00" was
    written for its readers, and the newsletter's zone is our best guess at theirs.
    """
    text = text.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=default_tz)
    return moment


def parse_week(text: str, zone: tzinfo, now: datetime | None = None) -> Period:
    """An ISO week (2022-W51), or one relative to now in the newsletter's zone, for
    schedulers: `last` (the last complete week), `this` (the week in progress) or `-N`
    (N weeks before this one; -1 is last)."""
    word = text.strip().lower()
    back = {"this": 0, "last": 1}.get(word)
    if back is None and _BACK.match(word):
        back = int(word[1:])
    if back is not None:
        today = (now or datetime.now(UTC)).astimezone(zone).date()
        year, week, _ = (today - timedelta(weeks=back)).isocalendar()
        text = f"{year}-W{week:02d}"
    match = _WEEK.match(text.strip())
    if not match:
        raise UsageError(
            f"bad week {text!r}: write an ISO week as YYYY-Www (2022-W51), or last, this or -N"
        )
    year, week = int(match[1]), int(match[2])
    try:
        monday = date.fromisocalendar(year, week, 1)
    except ValueError:
        raise UsageError(
            f"bad week {text!r}: {year} has no week {week} (ISO weeks run 1 to 52 or 53)"
        ) from None
    start = datetime.combine(monday, time(), zone)
    end = datetime.combine(monday + timedelta(days=7), time(), zone)
    return Period(start.astimezone(UTC), end.astimezone(UTC), f"{year}-W{week:02d}")


def parse_period(since: str | None, until: str | None, zone: tzinfo) -> Period:
    """--since/--until: dates are whole days in `zone`, and --until includes its day."""
    start = _bound(since, "--since", zone, end_of_day=False) if since else None
    end = _bound(until, "--until", zone, end_of_day=True) if until else None
    start = start or datetime(1970, 1, 1, tzinfo=UTC)
    end = end or datetime(9999, 1, 1, tzinfo=UTC)
    if end <= start:
        raise UsageError(f"--until {until} is before --since {since}: swap them")
    return Period(start.astimezone(UTC), end.astimezone(UTC), f"{since or '…'} to {until or '…'}")


def _bound(text: str, option: str, zone: tzinfo, *, end_of_day: bool) -> datetime:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        moment = parse_datetime(text, zone)
        if moment is None:
            raise UsageError(
                f"bad {option} {text!r}: give a date (2022-12-19) or an ISO 8601 time"
            ) from None
        return moment
    if end_of_day:
        day += timedelta(days=1)
    return datetime.combine(day, time(), zone)


def utc_now() -> datetime:
    """Now, timezone-aware in UTC: every stored time is one."""
    return datetime.now(UTC)
