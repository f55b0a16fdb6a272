"""Time intervals, as Alertmanager's ``time_intervals`` (its ``timeinterval`` package): pure.

A named time interval is a list of ``TimeInterval``; a time is in it when it is in any of them.
A ``TimeInterval`` holds a time when every field it sets holds it (a field left out holds
every time; a field given as an empty list holds none, as in Alertmanager):

- ``times``: ``[{start_time = "09:00", end_time = "17:00"}]``, minutes of the day, the end
  exclusive; ``HH:MM`` from ``00:00`` to ``24:00``;
- ``weekdays``: ``["monday:friday", "sunday"]``, names only, ranges inclusive;
- ``days_of_month``: ``["1:5", "-3:-1"]``, inclusive; a negative day counts from the month's
  end (-1 is its last day); a range is clamped to the month, one starting after its end holds
  nothing that month;
- ``months``: ``["january:march", "12"]``, names or numbers, inclusive;
- ``years``: ``["2026:2027"]``, inclusive;
- ``location``: an IANA zone (``"Europe/Berlin"``) in which the fields are read; UTC when left out.

Names are read case-blind; ranges are ``begin:end`` or one value. The checks and their
messages are Alertmanager's; Tocsin is stricter where Alertmanager accepts what can never
hold (a month number outside 1..12, a year before 1 or after 9999) or depends on the machine
(``location = "Local"``).
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, Strict, model_validator

from .config_model import Loc, Table, invalid

WEEKDAYS = {"sunday": 0, "monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4, "friday": 5, "saturday": 6}
MONTHS = {name: n for n, name in enumerate(
    ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
     "november", "december"), 1)}
_MONTH_NAMES = {n: name for name, n in MONTHS.items()}

#: Alertmanager's ``validTime``: ``HH:MM`` from 00:00 to 23:59, or 24:00
_VALID_TIME = re.compile(r"^((([01][0-9])|(2[0-3])):[0-5][0-9])$|(^24:00$)")
#: what Go's ``strconv.Atoi`` reads: an optional sign and decimal digits
_INT = re.compile(r"^[+-]?[0-9]+$")

Range = tuple[int, int]


class InvalidTimeInterval(ValueError):
    """A time interval Alertmanager would refuse (or Tocsin, see the module); says why."""


# ------------------------------------------------------------------ parsing (Alertmanager's checks)


def parse_time(text: str) -> int:
    """``HH:MM`` as minutes of the day (``24:00`` is 1440)."""
    if not isinstance(text, str) or not _VALID_TIME.match(text):
        raise InvalidTimeInterval(f"couldn't parse timestamp {text}, invalid format")
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def parse_time_range(start_time: str | None, end_time: str | None) -> Range:
    if not end_time or not start_time:
        raise InvalidTimeInterval("both start and end times must be provided")
    start, end = parse_time(start_time), parse_time(end_time)
    if start >= end:
        raise InvalidTimeInterval("start time cannot be equal or greater than end time")
    return start, end


def _atoi(text: str) -> int:
    if not _INT.match(text):
        raise InvalidTimeInterval(f'strconv.Atoi: parsing "{text}": invalid syntax')
    return int(text)


def _range(text: str, member: Callable[[str], int]) -> Range:
    """``begin:end`` or one member (Alertmanager's ``stringableRangeFromString``), lower-cased."""
    if not isinstance(text, str):
        raise InvalidTimeInterval(f"{text!r} is not a string")
    text = text.lower()
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 2:
            raise InvalidTimeInterval(f"couldn't parse range {text}, invalid format")
        return member(parts[0]), member(parts[1])
    n = member(text)
    return n, n


def _weekday(text: str) -> int:
    if text not in WEEKDAYS:
        raise InvalidTimeInterval(f"{text} is not a valid weekday")
    return WEEKDAYS[text]


def _month(text: str) -> int:
    if text in MONTHS:
        return MONTHS[text]
    if not _INT.match(text):
        raise InvalidTimeInterval(f"{text} is not a valid month")
    return int(text)


def parse_weekdays(text: str) -> Range:
    begin, end = _range(text, _weekday)
    if begin > end:
        raise InvalidTimeInterval("start day cannot be before end day")
    return begin, end


def parse_days_of_month(text: str) -> Range:
    begin, end = _range(text, _atoi)
    for day in (begin, end):
        if day == 0 or day < -31 or day > 31:
            raise InvalidTimeInterval(f"{day} is not a valid day of the month: out of range")
    if begin < 0 < end:
        raise InvalidTimeInterval("end day must be negative if start day is negative")
    # always invalid, whatever the month's length (28 days at least)
    if (28 + begin if begin < 0 else begin) > (28 + end if end < 0 else end):
        raise InvalidTimeInterval(f"end day {end} is always before start day {begin}")
    return begin, end


def parse_months(text: str) -> Range:
    begin, end = _range(text, _month)
    for m in (begin, end):
        if not 1 <= m <= 12:  # Tocsin: Alertmanager takes such a month and never matches it
            raise InvalidTimeInterval(f"{m} is not a valid month: out of range")
    if begin > end:
        raise InvalidTimeInterval(f"end month {_MONTH_NAMES[end]} is before start month {_MONTH_NAMES[begin]}")
    return begin, end


def parse_years(text: str) -> Range:
    begin, end = _range(text, _atoi)
    for y in (begin, end):
        if not 1 <= y <= 9999:  # Tocsin: the years a datetime holds
            raise InvalidTimeInterval(f"{y} is not a valid year: out of range")
    if begin > end:
        raise InvalidTimeInterval(f"end year {end} is before start year {begin}")
    return begin, end


@lru_cache(maxsize=256)
def zone(name: str) -> dt.tzinfo:
    """An IANA zone (``InvalidTimeInterval`` if there is none of that name); ``UTC`` is UTC."""
    if name == "UTC":
        return dt.UTC
    if name == "Local" or not name:
        raise InvalidTimeInterval(f"unknown time zone {name!r}: name an IANA zone (Local depends on the machine)")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidTimeInterval(f"unknown time zone {name}") from None


# ------------------------------------------------------------------ deciding


def days_in_month(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def _clamp(n: int, lo: int, hi: int) -> int:
    return lo if n <= lo else hi if n >= hi else n


def _within(value: int, ranges: Iterable[Range]) -> bool:
    return any(b <= value <= e for b, e in ranges)


@dataclass(frozen=True, slots=True)
class TimeInterval:
    """One of Alertmanager's ``TimeInterval``: each field None when left out (holds every time)."""

    times: tuple[Range, ...] | None = None
    weekdays: tuple[Range, ...] | None = None
    days_of_month: tuple[Range, ...] | None = None
    months: tuple[Range, ...] | None = None
    years: tuple[Range, ...] | None = None
    location: str | None = None

    def contains(self, t: dt.datetime) -> bool:
        """Whether the (aware) time ``t`` is in this interval (Alertmanager's ``ContainsTime``)."""
        t = t.astimezone(zone(self.location) if self.location else dt.UTC)
        if self.times is not None:
            minute = t.hour * 60 + t.minute
            if not any(s <= minute < e for s, e in self.times):
                return False
        if self.days_of_month is not None:
            dim = days_in_month(t.year, t.month)
            for b, e in self.days_of_month:
                begin = dim + b + 1 if b < 0 else b
                end = dim + e + 1 if e < 0 else e
                if begin > dim:  # starts after the month's end: nothing this month
                    continue
                if _clamp(begin, -dim, dim) <= t.day <= _clamp(end, -dim, dim):
                    break
            else:
                return False
        if self.months is not None and not _within(t.month, self.months):
            return False
        if self.weekdays is not None and not _within(t.isoweekday() % 7, self.weekdays):
            return False
        return self.years is None or _within(t.year, self.years)


def interval(times: Sequence[Mapping[str, str]] | None = None, weekdays: Sequence[str] | None = None,
             days_of_month: Sequence[str] | None = None, months: Sequence[str] | None = None,
             years: Sequence[str] | None = None, location: str | None = None) -> TimeInterval:
    """A ``TimeInterval`` from Alertmanager's text form (``InvalidTimeInterval`` says what is wrong)."""
    if location is not None:
        zone(location)

    def each(items: Sequence[str] | None, parse: Callable[[str], Range]) -> tuple[Range, ...] | None:
        return None if items is None else tuple(parse(x) for x in items)

    return TimeInterval(
        times=None if times is None else tuple(parse_time_range(r.get("start_time"), r.get("end_time")) for r in times),
        weekdays=each(weekdays, parse_weekdays), days_of_month=each(days_of_month, parse_days_of_month),
        months=each(months, parse_months), years=each(years, parse_years), location=location)


def active(intervals: Mapping[str, Sequence[TimeInterval]], names: Iterable[str], t: dt.datetime) -> list[str]:
    """Of ``names``, those whose interval holds ``t``, in the order given (Alertmanager's
    ``Intervener.Mutes``; a name not in ``intervals`` is a ``KeyError``: the routing file's
    check refuses it)."""
    return [name for name in names if any(ti.contains(t) for ti in intervals[name])]




# ------------------------------------------------------------------ the routing file's tables


def _checked(parse: Callable[[str], Range], what: str) -> BeforeValidator:
    """A field's item: the text Alertmanager reads, held as its range."""
    def check(text: Any) -> Range:
        if not isinstance(text, str):
            raise invalid("expected text: {what}", what=what)
        try:
            return parse(text)
        except InvalidTimeInterval as exc:
            raise invalid("{why}", why=exc) from None
    return BeforeValidator(check)


def _location(name: str) -> str:
    try:
        zone(name)
    except InvalidTimeInterval as exc:
        raise invalid("{why}", why=exc) from None
    return name


_Text = Annotated[str, Strict()]
Weekdays = Annotated[Range, _checked(parse_weekdays, 'a weekday or a range ("monday:friday")')]
DaysOfMonth = Annotated[Range, _checked(parse_days_of_month, 'a day of the month or a range ("1:5", "-3:-1")')]
Months = Annotated[Range, _checked(parse_months, 'a month or a range ("january:march", "1:3")')]
Years = Annotated[Range, _checked(parse_years, 'a year or a range ("2026:2027")')]


class TimeRangeFile(Table):
    """``{start_time = "09:00", end_time = "17:00"}``: the end exclusive, ``24:00`` the day's end."""

    start_time: _Text = Field(default="", description="HH:MM, 00:00 to 24:00")
    end_time: _Text = Field(default="", description="HH:MM, 00:00 to 24:00")

    @model_validator(mode="after")
    def _range(self) -> TimeRangeFile:
        try:
            parse_time_range(self.start_time, self.end_time)
        except InvalidTimeInterval as exc:
            raise invalid("{why}", why=exc) from None
        return self


class TimeIntervalFile(Table):
    """One of a named interval's ``time_intervals`` (Alertmanager's ``TimeInterval``)."""

    times: tuple[TimeRangeFile, ...] | None = Field(
        default=None, description='expected a list of {start_time = "HH:MM", end_time = "HH:MM"}')
    weekdays: tuple[Weekdays, ...] | None = Field(
        default=None, description='expected a list of weekdays or ranges ("monday:friday")')
    days_of_month: tuple[DaysOfMonth, ...] | None = Field(
        default=None, description='expected a list of days of the month or ranges ("1:5", "-3:-1")')
    months: tuple[Months, ...] | None = Field(
        default=None, description='expected a list of months or ranges ("january:march", "1:3")')
    years: tuple[Years, ...] | None = Field(default=None, description='expected a list of years or ranges ("2026:2027")')
    location: Annotated[_Text, AfterValidator(_location)] | None = Field(
        default=None, description='expected an IANA time zone ("Europe/Berlin")')

    def compiled(self) -> TimeInterval:
        times = None if self.times is None else tuple(parse_time_range(r.start_time, r.end_time) for r in self.times)
        return TimeInterval(times, self.weekdays, self.days_of_month, self.months, self.years, self.location)


class NamedIntervalFile(Table):
    """``[[time_intervals]]``: a name and its list of intervals (any of them holds)."""

    name: _Text = Field(min_length=1, max_length=256, description="expected a name, 1..256 characters")
    time_intervals: tuple[Annotated[TimeIntervalFile, Field(description="expected a table")], ...] = Field(
        default=(), description="expected a list of tables (times, weekdays, days_of_month, months, years, location)")


def named_intervals(files: Sequence[NamedIntervalFile]) -> tuple[dict[str, tuple[TimeInterval, ...]], Loc | None]:
    """The named intervals of a routing file by name, and the key path of a name given twice (None if none is)."""
    out: dict[str, tuple[TimeInterval, ...]] = {}
    for i, f in enumerate(files):
        if f.name in out:
            return out, ("time_intervals", i, "name")
        out[f.name] = tuple(ti.compiled() for ti in f.time_intervals)
    return out, None


__all__ = ["MONTHS", "WEEKDAYS", "InvalidTimeInterval", "NamedIntervalFile", "TimeInterval", "TimeIntervalFile",
           "TimeRangeFile", "active", "named_intervals", "days_in_month", "interval",
           "parse_days_of_month", "parse_months", "parse_time", "parse_time_range", "parse_weekdays", "parse_years",
           "zone"]
