"""Token bucket and circuit breaker: tables of cases plus properties (clock passed in)."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tocsin.decisions.limits import BreakerState, CircuitBreaker, TokenBucket

# ---------------------------------------------------------------- token bucket


@pytest.mark.parametrize(
    ("rate", "burst", "calls", "expected"),
    [
        # starts full: `burst` immediate tokens, then the wait for the next one
        (1.0, 1, [0.0, 0.0], [0.0, 1.0]),
        (1.0, 3, [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]),
        (2.0, 1, [0.0, 0.0], [0.0, 0.5]),
        (0.5, 1, [0.0, 0.0], [0.0, 2.0]),
        # half a token back after half the period: the wait is the other half
        (1.0, 1, [0.0, 0.5], [0.0, 0.5]),
        # a full period later there is a token again
        (1.0, 1, [0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0]),
        # a long idle refills only up to burst
        (1.0, 2, [0.0, 0.0, 100.0, 100.0, 100.0], [0.0, 0.0, 0.0, 0.0, 1.0]),
        # a refused take takes nothing: asking again at once gives the same wait
        (1.0, 1, [0.0, 0.25, 0.25], [0.0, 0.75, 0.75]),
        # Slack/Telegram's 1/s with burst 1: a second message in the same second waits
        (1.0, 1, [10.0, 10.2, 11.0], [0.0, 0.8, 0.0]),
    ],
)
def test_bucket_table(rate: float, burst: int, calls: list[float], expected: list[float]) -> None:
    b = TokenBucket(rate, burst)
    got = [b.take(t) for t in calls]
    assert got == pytest.approx(expected)


def test_bucket_clock_stepping_back_refills_nothing() -> None:
    b = TokenBucket(1.0, 1)
    assert b.take(100.0) == 0.0
    assert b.take(50.0) == pytest.approx(1.0)  # no tokens from the past
    assert b.take(100.5) == pytest.approx(0.5)
    assert b.take(101.0) == 0.0


def test_bucket_waiting_the_answer_gives_a_token() -> None:
    b = TokenBucket(3.0, 1)
    assert b.take(0.0) == 0.0
    w = b.take(0.1)
    assert w > 0
    assert b.take(0.1 + w) == 0.0


@pytest.mark.parametrize(
    ("rate", "burst"),
    [(0, 1), (-1.0, 1), (math.inf, 1), (math.nan, 1), ("1", 1), (1.0, 0), (1.0, -1), (1.0, 1.5), (1.0, True)],
)
def test_bucket_rejects_bad_parameters(rate: object, burst: object) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)  # type: ignore[arg-type]


rates = st.floats(min_value=0.01, max_value=1000.0, allow_nan=False, allow_infinity=False)
bursts = st.integers(min_value=1, max_value=50)
steps = st.lists(st.floats(min_value=0.0, max_value=10.0, allow_nan=False), min_size=1, max_size=200)


@given(rates, bursts, steps)
def test_bucket_never_exceeds_rate(rate: float, burst: int, gaps: list[float]) -> None:
    """Over any interval, granted tokens <= burst + rate * elapsed."""
    b = TokenBucket(rate, burst)
    now, start, granted = 1000.0, 1000.0, 0
    for gap in gaps:
        now += gap
        w = b.take(now)
        assert w >= 0.0
        if w == 0.0:
            granted += 1
        else:
            assert w <= 1.0 / rate + 1e-6  # never more than one token's time
    assert granted <= burst + rate * (now - start) + 1e-6


@given(rates, bursts, steps)
def test_bucket_wait_is_honest(rate: float, burst: int, gaps: list[float]) -> None:
    """Whenever take says "wait w", taking again after exactly w succeeds, and taking
    again before it (a refusal takes nothing) does not."""
    b = TokenBucket(rate, burst)
    now = 0.0
    for gap in gaps:
        now += gap
        w = b.take(now)
        if w > 0:
            if w > 1e-6:
                assert b.take(now + w * 0.5) > 0
            assert b.take(now + w) == 0.0
            now += w


@given(rates, bursts, st.floats(min_value=0.0, max_value=1e6, allow_nan=False))
def test_bucket_starts_full(rate: float, burst: int, t0: float) -> None:
    b = TokenBucket(rate, burst)
    assert [b.take(t0) for _ in range(burst)] == [0.0] * burst
    assert b.take(t0) > 0


@given(rates, bursts, steps)
def test_bucket_is_deterministic(rate: float, burst: int, gaps: list[float]) -> None:
    def run() -> list[float]:
        b, now, out = TokenBucket(rate, burst), 0.0, []
        for g in gaps:
            now += g
            out.append(b.take(now))
        return out

    assert run() == run()


# ---------------------------------------------------------------- circuit breaker


def test_breaker_defaults() -> None:
    br = CircuitBreaker()
    assert br.failure_threshold == 5
    assert br.reset_after_s == 30.0
    assert br.state is BreakerState.CLOSED
    assert br.state == "closed"


# Scripts: ("allow", t, expected) / ("ok", t) / ("fail", t) / ("state", expected)
SCRIPTS = {
    "closed lets everything through": [
        ("allow", 0, True), ("fail", 0), ("allow", 1, True), ("fail", 1), ("state", "closed"),
    ],
    "opens at the threshold": [
        *[step for i in range(3) for step in (("allow", i, True), ("fail", i))],
        ("state", "open"), ("allow", 3, False), ("allow", 11.9, False), ("allow", 12, True),
    ],
    "a success resets the count": [
        ("fail", 0), ("fail", 0), ("ok", 0), ("fail", 1), ("fail", 1),
        ("state", "closed"), ("allow", 2, True), ("fail", 2), ("state", "open"),
    ],
    "half-open lets exactly one probe through": [
        ("fail", 0), ("fail", 0), ("fail", 0), ("state", "open"),
        ("allow", 9.99, False), ("allow", 10, True), ("state", "half_open"),
        ("allow", 10, False), ("allow", 15, False), ("allow", 19.9, False),
    ],
    "a good probe closes": [
        ("fail", 0), ("fail", 0), ("fail", 0), ("allow", 10, True), ("ok", 10.5),
        ("state", "closed"), ("allow", 10.6, True), ("allow", 10.6, True),
        # and the failure count starts again from zero
        ("fail", 11), ("fail", 11), ("state", "closed"), ("fail", 11), ("state", "open"),
    ],
    "a failed probe opens again for a full period": [
        ("fail", 0), ("fail", 0), ("fail", 0), ("allow", 10, True), ("fail", 11),
        ("state", "open"), ("allow", 20.9, False), ("allow", 21, True), ("state", "half_open"),
    ],
    "a lost probe is replaced after a period": [
        ("fail", 0), ("fail", 0), ("fail", 0), ("allow", 10, True),
        ("allow", 19, False), ("allow", 20, True), ("allow", 20, False),
    ],
    "late outcomes while open change nothing": [
        ("fail", 0), ("fail", 0), ("fail", 0), ("ok", 1), ("fail", 2),
        ("state", "open"), ("allow", 9, False), ("allow", 10, True),
    ],
}


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_breaker_scripts(name: str) -> None:
    br = CircuitBreaker(failure_threshold=3, reset_after_s=10)
    for step in SCRIPTS[name]:
        kind = step[0]
        if kind == "allow":
            assert br.allow(step[1]) is step[2], (name, step)
        elif kind == "ok":
            br.record(True, step[1])
        elif kind == "fail":
            br.record(False, step[1])
        else:
            assert br.state == step[1], (name, step)


@pytest.mark.parametrize(("threshold", "reset"), [(0, 30), (-1, 30), (1.5, 30), (True, 30), (5, -1), (5, math.nan)])
def test_breaker_rejects_bad_parameters(threshold: object, reset: object) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(threshold, reset)  # type: ignore[arg-type]


def test_breaker_wait_s() -> None:
    br = CircuitBreaker(failure_threshold=1, reset_after_s=30)
    assert br.wait_s(0) == 0.0
    br.record(False, 100)
    assert br.wait_s(110) == pytest.approx(20)
    assert br.wait_s(140) == 0.0
    assert br.allow(140)
    assert br.wait_s(141) == pytest.approx(29)


def test_breaker_threshold_one_and_zero_reset() -> None:
    br = CircuitBreaker(failure_threshold=1, reset_after_s=0)
    br.record(False, 5)
    assert br.state is BreakerState.OPEN
    assert br.allow(5)  # reset 0: the next call probes at once
    assert br.state is BreakerState.HALF_OPEN


events = st.lists(
    st.tuples(st.sampled_from(["allow", "ok", "fail"]), st.floats(min_value=0, max_value=50, allow_nan=False)),
    max_size=200,
)


@given(events, st.integers(1, 6), st.floats(min_value=0.5, max_value=60, allow_nan=False))
@example(script=[("fail", 13.0), ("allow", 50.0), ("allow", 1.1)], threshold=1, reset=1.1)  # the boundary
@settings(max_examples=300)
def test_breaker_properties(script: list[tuple[str, float]], threshold: int, reset: float) -> None:
    br = CircuitBreaker(threshold, reset)
    now = 0.0
    consecutive_failures = 0
    probes_in_period: list[float] = []
    for kind, gap in script:
        now += gap
        before = br.state
        if kind == "allow":
            allowed = br.allow(now)
            if before is BreakerState.CLOSED:
                assert allowed  # closed never refuses
            if br.state is BreakerState.HALF_OPEN and allowed:
                # at most one probe per reset period (``p + reset``, as the breaker adds: in
                # floats ``now - p`` can fall a hair short of ``reset`` at the very boundary)
                assert all(now >= p + reset for p in probes_in_period)
                probes_in_period.append(now)
            if before is BreakerState.OPEN and not allowed:
                assert br.state is BreakerState.OPEN
        else:
            br.record(kind == "ok", now)
            if before is BreakerState.CLOSED:
                consecutive_failures = 0 if kind == "ok" else consecutive_failures + 1
                # it opens exactly at the threshold of consecutive failures
                assert (br.state is BreakerState.OPEN) == (consecutive_failures >= threshold)
            if br.state is not BreakerState.CLOSED and before is BreakerState.CLOSED:
                probes_in_period = []
            if br.state is BreakerState.CLOSED:
                consecutive_failures = br.failures
                probes_in_period = []
            if before is BreakerState.HALF_OPEN:
                assert br.state is (BreakerState.CLOSED if kind == "ok" else BreakerState.OPEN)
                probes_in_period = []
        assert 0 <= br.failures
        assert br.wait_s(now) >= 0.0


@given(st.integers(1, 10), st.floats(min_value=0.1, max_value=100, allow_nan=False),
       st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_breaker_open_means_no_sends_until_reset(threshold: int, reset: float, t0: float) -> None:
    br = CircuitBreaker(threshold, reset)
    for _ in range(threshold):
        assert br.allow(t0)
        br.record(False, t0)
    assert br.state is BreakerState.OPEN
    assert not br.allow(t0 + reset * 0.99)
    assert br.allow(t0 + reset)
    assert not br.allow(t0 + reset)
