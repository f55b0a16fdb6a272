"""Time intervals (decisions/timeinterval.py): Alertmanager's ``timeinterval_test.go`` tables,
ported (its times in Go's RFC822Z, ``02 Jan 06 15:04 -0700``), plus the routing file's tables."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tocsin.decisions import timeinterval as ti
from tocsin.decisions.timeinterval import InvalidTimeInterval, TimeInterval

SYDNEY = "Australia/Sydney"


def t(text: str) -> dt.datetime:
    """Go's ``time.RFC822Z`` (``02 Jan 06 15:04 -0700``); a one-digit day as Go reads it."""
    day, rest = text.split(" ", 1)
    return dt.datetime.strptime(f"{int(day):02d} {rest}", "%d %b %y %H:%M %z")


# TestContainsTime: (interval, contained, not contained)
CONTAINS_CASES = [
    pytest.param(TimeInterval(), ["02 Jan 06 15:04 +0000", "03 Jan 07 10:04 +0000", "04 Jan 06 09:04 +0000"], [],
                 id="empty interval holds every time"),
    pytest.param(TimeInterval(times=((540, 1020),), weekdays=((1, 5),)),
                 ["04 May 20 15:04 +0000", "05 May 20 10:04 +0000", "09 Jun 20 09:04 +0000"],
                 ["03 May 20 15:04 +0000", "04 May 20 08:59 +0000", "05 May 20 05:00 +0000"],
                 id="9 to 5 monday to friday"),
    pytest.param(TimeInterval(days_of_month=((4, 6),), months=((4, 4),), years=((2020, 2020),)),
                 ["04 Apr 20 15:04 +0000", "05 Apr 20 00:00 +0000", "06 Apr 20 23:05 +0000"],
                 ["03 May 18 15:04 +0000", "03 Apr 20 23:59 +0000", "04 Jun 20 23:59 +0000",
                  "06 Apr 19 23:59 +0000", "07 Apr 20 00:00 +0000"],
                 id="easter 2020"),
    pytest.param(TimeInterval(days_of_month=((-3, -1),)),
                 ["31 Jan 20 15:04 +0000", "30 Jan 20 15:04 +0000", "29 Jan 20 15:04 +0000",
                  "30 Jun 20 00:00 +0000", "29 Feb 20 23:05 +0000"],
                 ["03 May 18 15:04 +0000", "27 Jan 20 15:04 +0000", "03 Apr 20 23:59 +0000",
                  "04 Jun 20 23:59 +0000", "06 Apr 19 23:59 +0000", "07 Apr 20 00:00 +0000",
                  "01 Mar 20 00:00 +0000"],
                 id="last 3 days of each month"),
    pytest.param(TimeInterval(months=((6, 6),), days_of_month=((-31, 31),)),
                 ["30 Jun 20 00:00 +0000", "01 Jun 20 00:00 +0000"],
                 ["31 May 20 00:00 +0000", "1 Jul 20 00:00 +0000"],
                 id="out of bound days clamped to the month"),
    pytest.param(TimeInterval(times=((540, 1020),), weekdays=((1, 5),), location=SYDNEY),
                 ["06 Apr 21 13:00 +1000"], ["06 Apr 21 13:00 +0000"],
                 id="another zone"),
    pytest.param(TimeInterval(times=((540, 1020),), weekdays=((1, 5),), months=((11, 11),), location=SYDNEY),
                 ["01 Nov 21 09:00 +1100", "31 Oct 21 22:00 +0000"], ["31 Oct 21 21:00 +0000"],
                 id="another zone in daylight saving time"),
    pytest.param(TimeInterval(days_of_month=((-1, -1),), location="America/New_York"),
                 ["31 Mar 21 12:00 -0400"], ["30 Mar 21 12:00 -0400"],
                 id="last day does not shift in a spring-forward month"),
    # TestTimeIntervalComplete
    pytest.param(ti.interval(times=[{"start_time": "13:00", "end_time": "15:00"}],
                             weekdays=["monday:wednesday", "saturday", "sunday"],
                             days_of_month=["1", "10", "20:-1"], years=["2020:2023"], months=["january:march"]),
                 ["10 Jan 21 13:00 +0000", "30 Jan 21 14:24 +0000"],
                 ["09 Jan 21 13:00 +0000", "20 Jan 21 12:59 +0000", "02 Feb 21 13:00 +0000"],
                 id="complete"),
    pytest.param(ti.interval(days_of_month=["30:31"], years=["2020:2023"], months=["february"]),
                 [], ["28 Feb 21 13:00 +0000"], id="a start after the month's end holds nothing (no clamping)"),
    # Tocsin's own
    pytest.param(TimeInterval(times=()), [], ["02 Jan 06 15:04 +0000"], id="an empty list holds nothing"),
    pytest.param(TimeInterval(times=((0, 1440),)), ["02 Jan 06 00:00 +0000", "02 Jan 06 23:59 +0000"], [],
                 id="00:00 to 24:00 is the whole day"),
    pytest.param(TimeInterval(times=((120, 360),), weekdays=((6, 6), (0, 0)), location="Europe/Berlin"),
                 ["02 May 26 00:00 +0000", "03 May 26 03:59 +0000"],
                 ["02 May 26 04:00 +0000", "01 May 26 23:59 +0000", "04 May 26 00:30 +0000"],
                 id="weekend nights in Berlin (summer time, UTC+2)"),
]


@pytest.mark.parametrize(("interval", "inside", "outside"), CONTAINS_CASES)
def test_contains_time(interval: TimeInterval, inside: list[str], outside: list[str]) -> None:
    for text in inside:
        assert interval.contains(t(text)), text
    for text in outside:
        assert not interval.contains(t(text)), text


# TestParseTimeString
@pytest.mark.parametrize(("start", "end", "expected"), [
    ("00:00", "24:00", (0, 1440)),
    ("01:35", "17:39", (95, 1059)),
    ("09:35", "09:39", (575, 579)),
    ("17:31", "17:31", "start time cannot be equal or greater than end time"),
    ("12:30", "24:01", "couldn't parse timestamp 24:01, invalid format"),
    ("09:30", "07:41", "start time cannot be equal or greater than end time"),
    ("24:00", "17:41", "start time cannot be equal or greater than end time"),
    ("14:03", None, "both start and end times must be provided"),
    ("01:99", "23:59", "couldn't parse timestamp 01:99, invalid format"),
    ("00:00", "99:99", "couldn't parse timestamp 99:99, invalid format"),
    ("9:00", "17:00", "couldn't parse timestamp 9:00, invalid format"),
])
def test_parse_time_range(start: str, end: str | None, expected: Any) -> None:
    if isinstance(expected, str):
        with pytest.raises(InvalidTimeInterval) as exc:
            ti.parse_time_range(start, end)
        assert str(exc.value) == expected
    else:
        assert ti.parse_time_range(start, end) == expected


# TestYamlUnmarshal's errors and its accepted ranges
@pytest.mark.parametrize(("field", "text", "expected"), [
    ("weekdays", "friday:monday", "start day cannot be before end day"),
    ("weekdays", "blurgsday:flurgsday", "blurgsday is not a valid weekday"),
    ("weekdays", "1:3", "1 is not a valid weekday"),
    ("weekdays", "-2:-1", "-2 is not a valid weekday"),
    ("weekdays", "Monday:FRIDAY", (1, 5)),
    ("weekdays", "sunday", (0, 0)),
    ("weekdays", "monday:tuesday:friday", "couldn't parse range monday:tuesday:friday, invalid format"),
    ("days_of_month", "0", "0 is not a valid day of the month: out of range"),
    ("days_of_month", "-50:-20", "-50 is not a valid day of the month: out of range"),
    ("days_of_month", "1:50", "50 is not a valid day of the month: out of range"),
    ("days_of_month", "1:-1", (1, -1)),
    ("days_of_month", "-15:5", "end day must be negative if start day is negative"),
    ("days_of_month", "10:-25", "end day -25 is always before start day 10"),
    ("days_of_month", "-7:-1", (-7, -1)),
    ("days_of_month", "x", 'strconv.Atoi: parsing "x": invalid syntax'),
    ("months", "January:december", (1, 12)),
    ("months", "1:3", (1, 3)),
    ("months", "martius:june", "martius is not a valid month"),
    ("months", "march:junius", "junius is not a valid month"),
    ("months", "december:january", "end month january is before start month december"),
    ("months", "13", "13 is not a valid month: out of range"),  # Tocsin: Alertmanager takes it, never matching
    ("years", "2022:2020", "end year 2020 is before start year 2022"),
    ("years", "2020:2025", (2020, 2025)),
    ("years", "0", "0 is not a valid year: out of range"),  # Tocsin
])
def test_parse_ranges(field: str, text: str, expected: Any) -> None:
    parse = {"weekdays": ti.parse_weekdays, "days_of_month": ti.parse_days_of_month, "months": ti.parse_months,
             "years": ti.parse_years}[field]
    if isinstance(expected, str):
        with pytest.raises(InvalidTimeInterval) as exc:
            parse(text)
        assert str(exc.value) == expected
    else:
        assert parse(text) == expected


@pytest.mark.parametrize(("name", "ok"), [("Australia/Sydney", True), ("UTC", True), ("Europe/Berlin", True),
                                          ("Mars/Base", False), ("Local", False), ("", False), ("../etc", False)])
def test_location(name: str, ok: bool) -> None:
    if ok:
        ti.zone(name)
    else:
        with pytest.raises(InvalidTimeInterval):
            ti.zone(name)


def test_advanced_yaml_case() -> None:
    """TestYamlUnmarshal's "more advanced" case: the last week of the first quarter, but Saturday,
    in business hours, 2020 to 2025 and 2030 to 2035."""
    interval = ti.interval(weekdays=["monday:friday", "sunday"], months=["january:march"], days_of_month=["-7:-1"],
                           years=["2020:2025", "2030:2035"], times=[{"start_time": "09:00", "end_time": "17:00"}])
    for text in ("27 Jan 21 09:00 +0000", "28 Jan 21 16:59 +0000", "29 Jan 21 13:00 +0000", "31 Mar 25 13:00 +0000",
                 "31 Jan 35 13:00 +0000"):
        assert interval.contains(t(text)), text
    for text in ("30 Jan 21 13:00 +0000", "01 Apr 21 13:00 +0000", "30 Jan 26 13:00 +0000", "31 Jan 35 17:01 +0000"):
        assert not interval.contains(t(text)), text


# TestIntervener_Mutes
EVENINGS_AND_WEEKENDS = {
    "evenings": (TimeInterval(times=((0, 540), (1020, 1440)), location=SYDNEY),),
    "weekends": (TimeInterval(weekdays=((6, 6), (0, 0)), location=SYDNEY),),
}


def sydney(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=ti.zone(SYDNEY))  # type: ignore[misc]


@pytest.mark.parametrize(("now", "muted_by"), [
    (sydney(2024, 1, 1, 0, 0), ["evenings"]),
    (sydney(2024, 1, 1, 9, 0), []),
    (sydney(2024, 1, 6, 10, 0), ["weekends"]),
    (sydney(2024, 1, 6, 17, 0), ["evenings", "weekends"]),
    (dt.datetime(2024, 1, 1, 10, 0, tzinfo=dt.UTC), ["evenings"]),
    (dt.datetime(2024, 1, 6, 10, 0, tzinfo=dt.UTC), ["evenings", "weekends"]),
])
def test_active(now: dt.datetime, muted_by: list[str]) -> None:
    assert ti.active(EVENINGS_AND_WEEKENDS, ["evenings", "weekends"], now) == muted_by


# ------------------------------------------------------------------ properties

instants = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2040, 1, 1), timezones=st.just(dt.UTC))


@given(instants, st.sampled_from(["UTC", "Europe/Berlin", SYDNEY, "America/New_York", "Asia/Kolkata"]))
def test_a_field_left_out_holds_every_time_and_the_same_instant_decides_the_same(when: dt.datetime, zone: str) -> None:
    """Only the instant counts, not the zone it is written in; a whole day of every weekday
    holds every time."""
    interval = TimeInterval(times=((0, 1440),), weekdays=((0, 6),), days_of_month=((1, -1),), location=zone)
    assert interval.contains(when)
    narrow = TimeInterval(times=((540, 1020),), weekdays=((1, 5),), location=zone)
    assert narrow.contains(when) == narrow.contains(when.astimezone(ti.zone(SYDNEY)))


@given(instants, st.integers(1, 31), st.integers(1, 31))
def test_negative_days_count_from_the_month_end(when: dt.datetime, a: int, b: int) -> None:
    """``-k`` is the month's day ``days_in_month - k + 1``: a range of negatives holds as the
    positive range it names this month."""
    lo, hi = sorted((a, b))
    dim = ti.days_in_month(when.year, when.month)
    negative = TimeInterval(days_of_month=((-hi, -lo),))
    expected = dim - hi + 1 <= when.day <= dim - lo + 1
    assert negative.contains(when) == expected
