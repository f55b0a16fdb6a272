"""Failure classes and the retry schedule (DESIGN "Delivery"): tables plus properties."""

from __future__ import annotations

import datetime as dt
import email.utils
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tocsin.decisions.retry import (
    DEFAULT_BACKOFF_S,
    DEFAULT_MAX_AGE_S,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_SCHEDULE_S,
    DEFAULT_SLOW_BACKOFF_S,
    JITTER,
    MAX_RETRY_AFTER_S,
    Reason,
    classify_http,
    classify_smtp,
    parse_retry_after,
    plan_retry,
)

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)

# ---------------------------------------------------------------- classification

HTTP_TABLE = [
    (200, True, False, Reason.OK),
    (201, True, False, Reason.OK),
    (202, True, False, Reason.OK),
    (204, True, False, Reason.OK),
    (299, True, False, Reason.OK),
    (400, False, False, Reason.CLIENT_ERROR),
    (401, False, False, Reason.CLIENT_ERROR),
    (403, False, False, Reason.CLIENT_ERROR),
    (404, False, False, Reason.CLIENT_ERROR),
    (405, False, False, Reason.CLIENT_ERROR),
    (408, False, True, Reason.TIMEOUT),
    (409, False, False, Reason.CLIENT_ERROR),
    (410, False, False, Reason.CLIENT_ERROR),
    (413, False, False, Reason.CLIENT_ERROR),
    (422, False, False, Reason.CLIENT_ERROR),
    (429, False, True, Reason.RATE_LIMITED),
    (499, False, False, Reason.CLIENT_ERROR),
    (500, False, True, Reason.SERVER_ERROR),
    (501, False, True, Reason.SERVER_ERROR),
    (502, False, True, Reason.SERVER_ERROR),
    (503, False, True, Reason.SERVER_ERROR),
    (504, False, True, Reason.SERVER_ERROR),
    (599, False, True, Reason.SERVER_ERROR),
    # the receiver did not take it (redirects are not followed): try again
    (100, False, True, Reason.UNKNOWN),
    (301, False, True, Reason.UNKNOWN),
    (302, False, True, Reason.UNKNOWN),
    (304, False, True, Reason.UNKNOWN),
]


@pytest.mark.parametrize(("status", "ok", "retryable", "reason"), HTTP_TABLE)
def test_classify_http(status: int, ok: bool, retryable: bool, reason: Reason) -> None:
    assert classify_http(status) == (ok, retryable, reason)


@given(st.integers(min_value=100, max_value=599))
def test_classify_http_properties(status: int) -> None:
    ok, retryable, reason = classify_http(status)
    assert not (ok and retryable)
    assert ok == (200 <= status < 300)
    # the permanent ones are exactly the 4xx other than 408 and 429
    permanent = not ok and not retryable
    assert permanent == (400 <= status < 500 and status not in (408, 429))
    assert (reason is Reason.OK) == ok


SMTP_TABLE = [
    (250, True, False, Reason.OK),
    (251, True, False, Reason.OK),
    (354, True, False, Reason.OK),
    (421, False, True, Reason.SERVER_ERROR),
    (450, False, True, Reason.SERVER_ERROR),
    (451, False, True, Reason.SERVER_ERROR),
    (452, False, True, Reason.SERVER_ERROR),
    (500, False, False, Reason.CLIENT_ERROR),
    (535, False, False, Reason.CLIENT_ERROR),
    (550, False, False, Reason.CLIENT_ERROR),
    (552, False, False, Reason.CLIENT_ERROR),
    (553, False, False, Reason.CLIENT_ERROR),
    (554, False, False, Reason.CLIENT_ERROR),
]


@pytest.mark.parametrize(("code", "ok", "retryable", "reason"), SMTP_TABLE)
def test_classify_smtp(code: int, ok: bool, retryable: bool, reason: Reason) -> None:
    assert classify_smtp(code) == (ok, retryable, reason)


# ---------------------------------------------------------------- backoff schedule


def test_defaults() -> None:
    assert DEFAULT_BACKOFF_S == (1.0, 2.0, 4.0, 8.0)  # fast: a blip
    assert DEFAULT_SLOW_BACKOFF_S == (300.0, 1800.0, 7200.0, 43200.0, 86400.0)  # slow: an outage
    assert DEFAULT_SCHEDULE_S == DEFAULT_BACKOFF_S + DEFAULT_SLOW_BACKOFF_S
    assert DEFAULT_MAX_ATTEMPTS == 10  # the first contact and one per step
    assert DEFAULT_MAX_AGE_S == 2 * 86400
    assert sum(DEFAULT_SCHEDULE_S) * (1 + JITTER) < DEFAULT_MAX_AGE_S  # the schedule fits the deadline
    assert JITTER == 0.2


class FixedRng(random.Random):
    """uniform() returns one end of the range: checks the jitter bounds exactly."""

    def __init__(self, end: str) -> None:
        super().__init__(0)
        self.end = end

    def uniform(self, a: float, b: float) -> float:
        return {"low": a, "mid": (a + b) / 2, "high": b}[self.end]


@pytest.mark.parametrize(
    ("attempt", "base"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)],
)
@pytest.mark.parametrize(("end", "factor"), [("low", 0.8), ("mid", 1.0), ("high", 1.2)])
def test_backoff_1_2_4_8_with_jitter(attempt: int, base: float, end: str, factor: float) -> None:
    plan = plan_retry(attempt, 5, DEFAULT_BACKOFF_S, True, NOW, rng=FixedRng(end))
    assert plan.retry and plan.reason == "retry scheduled"
    assert plan.delay_s == pytest.approx(base * factor)
    assert plan.not_before == NOW + dt.timedelta(seconds=plan.delay_s)


@pytest.mark.parametrize("attempt", [1, 2, 3, 4])
def test_jitter_stays_within_20_percent(attempt: int) -> None:
    base = DEFAULT_BACKOFF_S[attempt - 1]
    rng = random.Random(attempt)
    delays = [plan_retry(attempt, 5, DEFAULT_BACKOFF_S, True, NOW, rng=rng).delay_s for _ in range(500)]
    assert all(base * 0.8 <= d <= base * 1.2 for d in delays)
    assert max(delays) - min(delays) > base * 0.2  # and it does spread (no thundering herd)


@pytest.mark.parametrize(
    ("attempt", "max_attempts", "retry", "reason"),
    [
        (1, 5, True, "retry scheduled"),
        (4, 5, True, "retry scheduled"),
        (5, 5, False, "exhausted after 5 attempts"),
        (6, 5, False, "exhausted after 6 attempts"),
        (1, 1, False, "exhausted after 1 attempts"),
        (2, 3, True, "retry scheduled"),
        (3, 3, False, "exhausted after 3 attempts"),
    ],
)
def test_max_attempts(attempt: int, max_attempts: int, retry: bool, reason: str) -> None:
    plan = plan_retry(attempt, max_attempts, DEFAULT_BACKOFF_S, True, NOW, rng=random.Random(1))
    assert plan.retry is retry
    assert plan.reason == reason
    assert (plan.not_before is None) is (not retry)


def test_five_attempts_means_four_retries() -> None:
    rng = random.Random(7)
    attempts, attempt = [], 1
    while True:
        attempts.append(attempt)
        plan = plan_retry(attempt, 5, DEFAULT_BACKOFF_S, True, NOW, rng=rng)
        if not plan.retry:
            break
        attempt += 1
    assert attempts == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("attempt", [1, 3, 5])
def test_permanent_failure_never_retries(attempt: int) -> None:
    plan = plan_retry(attempt, 5, DEFAULT_BACKOFF_S, False, NOW, retry_after_s=1.0)
    assert plan == plan_retry(attempt, 5, DEFAULT_BACKOFF_S, False, NOW)
    assert not plan.retry and plan.reason == "permanent failure" and plan.not_before is None


def test_schedule_longer_than_the_list_repeats_the_last_step() -> None:
    plan = plan_retry(7, 10, (1.0, 2.0), True, NOW, rng=FixedRng("mid"))
    assert plan.delay_s == pytest.approx(2.0)


def test_empty_schedule_falls_back_to_the_default() -> None:
    plan = plan_retry(3, 10, (), True, NOW, rng=FixedRng("mid"))
    assert plan.delay_s == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        (None, 2.0),  # the backoff
        (0.5, 2.0),  # the larger of the two
        (2.0, 2.0),
        (30.0, 30.0),  # Retry-After wins when longer
        (MAX_RETRY_AFTER_S * 10, MAX_RETRY_AFTER_S),  # capped
        (float("inf"), 2.0),  # nonsense is ignored
        (float("nan"), 2.0),
    ],
)
def test_retry_after_in_the_plan(retry_after: float | None, expected: float) -> None:
    plan = plan_retry(2, 5, DEFAULT_BACKOFF_S, True, NOW, retry_after_s=retry_after, rng=FixedRng("mid"))
    assert plan.retry
    assert plan.delay_s == pytest.approx(expected)


@given(
    attempt=st.integers(1, 20),
    max_attempts=st.integers(1, 20),
    schedule=st.lists(st.floats(0, 3600, allow_nan=False), max_size=8),
    retry_after=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    seed=st.integers(0, 2**32),
)
def test_plan_properties(attempt: int, max_attempts: int, schedule: list[float],
                         retry_after: float | None, seed: int) -> None:
    plan = plan_retry(attempt, max_attempts, schedule, True, NOW, retry_after, random.Random(seed))
    assert plan.retry == (attempt < max_attempts)
    if plan.retry:
        assert plan.not_before is not None and plan.not_before >= NOW
        steps = list(schedule) or list(DEFAULT_BACKOFF_S)
        base = steps[min(attempt - 1, len(steps) - 1)]
        assert base * (1 - JITTER) - 1e-9 <= plan.delay_s
        assert plan.delay_s <= max(base * (1 + JITTER), MAX_RETRY_AFTER_S) + 1e-9
        if retry_after is not None and 0 <= retry_after <= MAX_RETRY_AFTER_S:
            assert plan.delay_s >= retry_after
    # the same randomness plans the same
    assert plan == plan_retry(attempt, max_attempts, schedule, True, NOW, retry_after, random.Random(seed))


# ---------------------------------------------------------------- Retry-After


def http_date(when: dt.datetime) -> str:
    return email.utils.format_datetime(when, usegmt=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("0", 0.0),
        ("2", 2.0),
        (" 120 ", 120.0),
        ("1.5", 1.5),
        ("-5", 0.0),  # never negative
        ("86400", MAX_RETRY_AFTER_S),  # capped
        ("inf", None),
        ("Infinity", None),
        ("nan", None),
        ("1e400", None),
        ("soon", None),
        ("Mon, 32 Foo 2024 99:99:99 GMT", None),
        (http_date(NOW + dt.timedelta(seconds=90)), 90.0),
        (http_date(NOW + dt.timedelta(hours=1)), 3600.0),
        (http_date(NOW - dt.timedelta(seconds=90)), 0.0),  # in the past: now
        (http_date(NOW + dt.timedelta(days=3)), MAX_RETRY_AFTER_S),
        ("Wed, 01 May 2024 12:00:30 GMT", 30.0),
        ("Wed, 01 May 2024 14:00:30 +0200", 30.0),  # an offset is honoured
        ("Wednesday, 01-May-24 12:00:30 GMT", 30.0),  # obsolete RFC 850 form: recipients accept it
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    got = parse_retry_after(value, NOW)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_parse_retry_after_naive_now_is_utc() -> None:
    assert parse_retry_after("Wed, 01 May 2024 12:00:30 GMT", NOW.replace(tzinfo=None)) == pytest.approx(30)


@given(st.text(max_size=60))
def test_parse_retry_after_never_raises(value: str) -> None:
    got = parse_retry_after(value, NOW)
    assert got is None or 0.0 <= got <= MAX_RETRY_AFTER_S


@given(st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(9998, 1, 1),
                    timezones=st.just(dt.UTC)))
def test_parse_retry_after_http_dates(when: dt.datetime) -> None:
    when = when.replace(microsecond=0)
    got = parse_retry_after(http_date(when), NOW)
    assert got is not None
    expected = min(MAX_RETRY_AFTER_S, max(0.0, (when - NOW).total_seconds()))
    assert got == pytest.approx(expected)


@given(st.integers(min_value=0, max_value=10**30))
def test_parse_retry_after_delta_seconds(n: int) -> None:
    assert parse_retry_after(str(n), NOW) == pytest.approx(min(float(n), MAX_RETRY_AFTER_S))
