from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.dates import parse_datetime, parse_period, parse_week
from newsletter.errors import UsageError

KYIV = ZoneInfo("Europe/Kyiv")


def week_of(moment: datetime, zone: ZoneInfo) -> str:
    year, week, _ = moment.astimezone(zone).isocalendar()
    return f"{year}-W{week:02d}"


def test_week_is_monday_to_monday_in_the_newsletter_zone() -> None:
    week = parse_week("2022-W51", KYIV)
    assert week.start == datetime(2022, 12, 18, 22, 0, tzinfo=UTC)  # Mon 00:00 in Kyiv (+02)
    assert week.end == datetime(2022, 12, 25, 22, 0, tzinfo=UTC)
    assert week.label == "2022-W51"


def test_sunday_2330_utc_is_next_week_in_kyiv_but_not_in_utc() -> None:
    late_sunday = datetime(2022, 12, 25, 23, 30, tzinfo=UTC)
    assert late_sunday not in parse_week("2022-W51", KYIV)
    assert late_sunday in parse_week("2022-W52", KYIV)
    assert late_sunday in parse_week("2022-W51", ZoneInfo("UTC"))


def test_week_across_a_dst_change_is_167_hours() -> None:
    # Kyiv moves its clocks forward on Sunday 2023-03-26: that ISO week is an hour short.
    week = parse_week("2023-W12", KYIV)
    assert week.end - week.start == timedelta(hours=167)


def test_week_53_exists_only_in_long_years() -> None:
    assert parse_week("2020-W53", KYIV).label == "2020-W53"
    with pytest.raises(UsageError, match="2022 has no week 53"):
        parse_week("2022-W53", KYIV)


@pytest.mark.parametrize("bad", ["2022-51", "W51", "2022-W", "2022-W00", "22-W10", "", "next"])
def test_bad_weeks_are_usage_errors_naming_the_input(bad: str) -> None:
    with pytest.raises(UsageError, match="bad week"):
        parse_week(bad, KYIV)


@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1)))
def test_every_moment_is_in_exactly_the_week_week_of_names(naive: datetime) -> None:
    moment = naive.replace(tzinfo=UTC)
    label = week_of(moment, KYIV)
    assert moment in parse_week(label, KYIV)


def test_parse_datetime_forms() -> None:
    assert parse_datetime("2022-12-19T10:00:00Z", KYIV) == datetime(2022, 12, 19, 10, tzinfo=UTC)
    assert parse_datetime("Mon, 19 Dec 2022 10:00:00 +0000", KYIV) == datetime(
        2022, 12, 19, 10, tzinfo=UTC
    )
    naive = parse_datetime("2022-12-19T10:00", KYIV)
    assert naive is not None and naive.utcoffset() == timedelta(hours=2)
    assert parse_datetime("yesterday", KYIV) is None


def test_until_includes_its_whole_day() -> None:
    period = parse_period("2022-12-19", "2022-12-19", KYIV)
    assert datetime(2022, 12, 19, 21, 59, tzinfo=UTC) in period  # 23:59 in Kyiv
    assert datetime(2022, 12, 19, 22, 0, tzinfo=UTC) not in period
    with pytest.raises(UsageError, match="before --since"):
        parse_period("2022-12-20", "2022-12-19", KYIV)
    with pytest.raises(UsageError, match="bad --since"):
        parse_period("last week", None, KYIV)


@pytest.mark.parametrize(
    ("word", "now", "expected"),
    [
        ("last", datetime(2022, 12, 26, 8, 0, tzinfo=KYIV), "2022-W51"),
        ("LAST", datetime(2022, 12, 26, 8, 0, tzinfo=KYIV), "2022-W51"),
        ("this", datetime(2022, 12, 26, 8, 0, tzinfo=KYIV), "2022-W52"),
        ("-0", datetime(2022, 12, 26, 8, 0, tzinfo=KYIV), "2022-W52"),
        ("-1", datetime(2022, 12, 26, 8, 0, tzinfo=KYIV), "2022-W51"),
        ("-3", datetime(2022, 12, 26, 8, 0, tzinfo=KYIV), "2022-W49"),
        # Sunday 23:30 UTC is already Monday in Kyiv: "last" is the week that just ended.
        ("last", datetime(2023, 1, 1, 22, 30, tzinfo=UTC), "2022-W52"),
        ("last", datetime(2023, 1, 1, 21, 30, tzinfo=UTC), "2022-W51"),
        # Across a year with 53 ISO weeks.
        ("last", datetime(2021, 1, 4, 12, 0, tzinfo=KYIV), "2020-W53"),
    ],
)
def test_relative_weeks_for_schedulers(word: str, now: datetime, expected: str) -> None:
    assert parse_week(word, KYIV, now=now).label == expected


@pytest.mark.parametrize("word", ["previous", "-x", "+1", "--1", "-", "last week"])
def test_bad_relative_weeks_name_the_choices(word: str) -> None:
    with pytest.raises(UsageError, match="last, this or -N"):
        parse_week(word, KYIV)
