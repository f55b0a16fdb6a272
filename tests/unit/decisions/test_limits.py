"""Token bucket and circuit breaker: tables of cases plus properties (clock passed in)."""

from __future__ import annotations

import heapq
import math
import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tocsin.decisions.limits import BreakerState, CircuitBreaker, Gate, RateLimiter, TokenBucket

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


# ---------------------------------------------------------------- breaker: growing open periods


def test_the_open_period_doubles_with_each_failed_probe_up_to_the_cap() -> None:
    br = CircuitBreaker(1, 30.0, max_reset_after_s=100.0)
    br.record(False, 0.0)
    probes = []
    now = 0.0
    for _ in range(5):  # each probe fails
        now += br.wait_s(now)
        assert br.allow(now)
        probes.append(now)
        br.record(False, now)
    assert [b - a for a, b in zip([0.0, *probes], probes, strict=False)] == [30.0, 60.0, 100.0, 100.0, 100.0]
    now += br.wait_s(now)
    assert br.allow(now)
    br.record(True, now)  # a good probe closes, and the period starts again from 30 s
    assert br.state is BreakerState.CLOSED and br.period_s == 30.0
    br.record(False, now + 1)
    assert br.wait_s(now + 1) == pytest.approx(30.0)


def test_a_lost_probe_is_replaced_after_the_base_period_even_when_the_period_grew() -> None:
    br = CircuitBreaker(1, 10.0, max_reset_after_s=1000.0)
    br.record(False, 0.0)
    assert br.allow(10.0)
    br.record(False, 10.0)  # open for 20 s now
    assert not br.allow(29.9) and br.allow(30.0)  # the probe; it never reports back ...
    assert not br.would_allow(39.9) and br.allow(40.0)  # ... and is replaced 10 s later


@pytest.mark.parametrize(("reset", "cap"), [(30, 29), (30, math.inf), (30, "60")])
def test_breaker_rejects_a_bad_cap(reset: float, cap: object) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(5, reset, cap)  # type: ignore[arg-type]


@given(events, st.integers(1, 6), st.floats(min_value=0.5, max_value=60, allow_nan=False),
       st.floats(min_value=1, max_value=20, allow_nan=False))
def test_would_allow_is_allow_without_the_change(script: list[tuple[str, float]], threshold: int, reset: float,
                                                 growth: float) -> None:
    br = CircuitBreaker(threshold, reset, reset * growth)
    now = 0.0
    for kind, gap in script:
        now += gap
        if kind == "allow":
            before = (br.state, br.wait_s(now), br.code)
            peek = br.would_allow(now)
            assert (br.state, br.wait_s(now), br.code) == before  # nothing changed
            assert br.allow(now) is peek
            assert peek or br.wait_s(now) > 0  # refused: the wait says until when
        else:
            br.record(kind == "ok", now)
        assert br.code == {"closed": 0, "half_open": 1, "open": 2}[br.state.value]
        assert reset <= br.period_s <= reset * growth + 1e-9


# ---------------------------------------------------------------- rate limiter: reservations


def burst(limiter: RateLimiter, arrivals: list[tuple[float, str, bool]], seed: int = 0,
          jitter: bool = True) -> tuple[list[tuple[float, str, bool]], int, dict[str, int]]:
    """Run commands through the limiter as the deliver agent does: sent now, or deferred to the
    slot it answers (plus jitter up to its spread) and admitted again then. Returns the sends
    (time, key, urgent), the number of deferrals, and the deferrals of each key."""
    rng = random.Random(seed)
    queue = [(t, i, key, urgent) for i, (t, key, urgent) in enumerate(arrivals)]
    heapq.heapify(queue)
    seq = len(queue)
    sends: list[tuple[float, str, bool]] = []
    per_key: dict[str, int] = {}
    deferrals = 0
    while queue:
        t, _, key, urgent = heapq.heappop(queue)
        wait = limiter.admit(key, t, urgent)
        assert wait >= 0.0
        if wait == 0.0:
            sends.append((t, key, urgent))
            continue
        deferrals += 1
        per_key[key] = per_key.get(key, 0) + 1
        back = t + wait + (rng.uniform(0, limiter.spread_s) if jitter else 0.0)
        heapq.heappush(queue, (back, seq, key, urgent))
        seq += 1
    return sends, deferrals, per_key


@pytest.mark.parametrize(
    ("rate", "burst_", "n", "sent_at"),
    [
        # 1/s, burst 1: one now, then one each second at the slot each was given
        (1.0, 1, 4, [0.0, 1.0, 2.0, 3.0]),
        (1.0, 3, 5, [0.0, 0.0, 0.0, 1.0, 2.0]),  # three at once, then one a second
        (4.0, 1, 3, [0.0, 0.25, 0.5]),
        (0.5, 2, 4, [0.0, 0.0, 2.0, 4.0]),
    ],
)
def test_a_burst_is_drained_at_the_rate_from_reserved_slots(rate: float, burst_: int, n: int,
                                                           sent_at: list[float]) -> None:
    lim = RateLimiter(rate, burst_)
    sends, deferrals, per_key = burst(lim, [(0.0, f"c{i}", False) for i in range(n)], jitter=False)
    assert [t for t, _, _ in sends] == pytest.approx(sent_at)
    assert [k for _, k, _ in sends] == [f"c{i}" for i in range(n)]  # arrival order
    assert deferrals == max(0, n - burst_) and set(per_key.values()) <= {1}  # each deferred once at most
    assert not lim.reserved  # every slot was used


def test_a_returning_command_is_sent_without_asking_again() -> None:
    lim = RateLimiter(1.0, 1)
    assert lim.admit("a", 0.0) == 0.0
    assert lim.admit("b", 0.0) == pytest.approx(1.0)  # b's slot: t=1
    assert lim.admit("c", 0.1) == pytest.approx(1.9)  # c's: t=2
    assert lim.admit("b", 1.05) == 0.0  # back (a little late): its slot, no second deferral
    assert lim.admit("d", 1.1) == pytest.approx(1.9)  # d after c: t=3
    assert lim.admit("c", 2.0) == 0.0


def test_sev1_takes_the_first_free_slot_and_displaces_one_reserved_command() -> None:
    lim = RateLimiter(1.0, 1)
    assert lim.admit("a", 0.0) == 0.0
    assert [lim.admit(k, 0.0) for k in ("b", "c", "d")] == pytest.approx([1.0, 2.0, 3.0])
    assert lim.admit("X", 0.5, urgent=True) == pytest.approx(0.5)  # slot 1, ahead of b, c, d
    assert lim.admit("Y", 0.6, urgent=True) == pytest.approx(1.4)  # slot 2: one a second among SEV1s too
    assert lim.admit("b", 1.0) == pytest.approx(3.0)  # b's turn was taken: to the end of the line (4)
    assert lim.admit("X", 1.0, urgent=True) == 0.0
    assert lim.admit("c", 2.0) == pytest.approx(3.0)  # c's too (5)
    assert lim.admit("Y", 2.0, urgent=True) == 0.0
    assert lim.admit("d", 3.0) == 0.0  # d keeps its slot
    assert (lim.displaced, lim.pending_low) == (0, 2)


def test_sev1_waits_behind_sev1_only_and_goes_now_when_the_bucket_has_room() -> None:
    lim = RateLimiter(1.0, 2)
    assert lim.admit("X", 0.0, urgent=True) == 0.0  # room: at once
    assert lim.admit("a", 0.0) == 0.0
    assert lim.admit("b", 0.0) == pytest.approx(1.0)
    assert lim.admit("Y", 0.0, urgent=True) == pytest.approx(1.0)  # b's slot; b is displaced
    assert lim.admit("Z", 0.0, urgent=True) == pytest.approx(2.0)  # no reserved one left to displace: behind
    assert lim.admit("Y", 1.0, urgent=True) == 0.0
    assert lim.admit("b", 1.0) == pytest.approx(2.0)  # behind Z


def test_forgotten_and_stale_reservations() -> None:
    lim = RateLimiter(1.0, 1)
    lim.admit("a", 0.0)
    assert lim.admit("b", 0.0) == pytest.approx(1.0)
    lim.forget("b")  # b was deferred for another reason (an open circuit): its slot goes unused
    assert "b" not in lim.reserved and lim.pending_low == 0
    assert lim.admit("b", 40.0) == 0.0  # back much later: asks like a new one
    assert lim.admit("c", 40.0) == pytest.approx(1.0)
    lim.admit("late", 100.0)
    assert "c" in lim.reserved  # never came back ...
    lim.admit("later", 41 + RateLimiter.STALE_S + 61)
    assert "c" not in lim.reserved and lim.pending_low == 0  # ... forgotten an hour after its slot


@pytest.mark.parametrize(("rate", "burst_"), [(0, 1), (-1.0, 1), (math.nan, 1), (1.0, 0), (1.0, 1.5)])
def test_limiter_rejects_bad_parameters(rate: object, burst_: object) -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate, burst_)  # type: ignore[arg-type]


severities = st.lists(st.booleans(), min_size=1, max_size=300)


def assert_rate(sends: list[tuple[float, str, bool]], rate: float, burst_: int, spread_s: float) -> None:
    """From any send to any later one, ``k`` sends take at least the time the bucket gives
    ``k`` tokens (the burst, then one per interval, less the jitter), and at most one send
    more (a SEV1 between two reserved slots)."""
    times = [t for t, _, _ in sends]
    interval = 1.0 / rate
    for i in range(len(times)):
        for j in range(i + 1, min(len(times), i + 40)):
            assert (j - i + 1) <= burst_ + 1 + (times[j] - times[i] + spread_s) / interval + 1e-6


@given(rates, bursts, severities, st.integers(0, 2**32))
@settings(max_examples=100)
def test_a_burst_of_n_is_n_sends_and_at_most_n_deferrals(rate: float, burst_: int, urgent: list[bool],
                                                          seed: int) -> None:
    """N commands at once (SEV1s among them, anywhere): each sent exactly once; the deferrals
    are N - burst when all are of one kind, and each SEV1 that jumps the line costs at most one
    more, so never more than N + #SEV1 - burst; the rate holds; the SEV1s go first."""
    n, n_urgent = len(urgent), sum(urgent)
    lim = RateLimiter(rate, burst_)
    t0 = 1000.0
    sends, deferrals, _ = burst(lim, [(t0, f"c{i}", u) for i, u in enumerate(urgent)], seed)
    assert sorted(k for _, k, _ in sends) == sorted(f"c{i}" for i in range(n))  # N sends, each once
    immediate = min(n, burst_)
    if n_urgent in (0, n):
        assert deferrals == n - immediate
    assert deferrals <= n - immediate + n_urgent
    # read together, as the deliver queue hands them over (SEV1 first): N - burst deferrals
    queued = sorted(range(n), key=lambda i: not urgent[i])
    _, in_order, _ = burst(RateLimiter(rate, burst_), [(t0, f"c{i}", urgent[i]) for i in queued], seed)
    assert in_order == n - immediate
    assert_rate(sends, rate, burst_, lim.spread_s)
    # SEV1 first: the k-th SEV1 goes within k + 1 intervals (and the jitter) of the burst
    sev1_times = sorted(t for t, _, u in sends if u)
    for k, t in enumerate(sev1_times):
        assert t - t0 <= (k + 1) / rate + lim.spread_s + 1e-6


@given(rates, bursts, st.lists(st.tuples(st.floats(0, 5, allow_nan=False), st.booleans()), min_size=1,
                               max_size=200), st.integers(0, 2**32))
@settings(max_examples=100)
def test_commands_arriving_at_any_times(rate: float, burst_: int, arrivals: list[tuple[float, bool]],
                                        seed: int) -> None:
    """However the commands arrive: each is sent once, deferrals are at most one per command
    and one per SEV1, and over any stretch the sends are within the burst and the rate."""
    lim = RateLimiter(rate, burst_)
    now, items = 0.0, []
    for i, (gap, u) in enumerate(arrivals):
        now += gap
        items.append((now, f"c{i}", u))
    sends, deferrals, _ = burst(lim, items, seed)
    assert sorted(k for _, k, _ in sends) == sorted(k for _, k, _ in items)
    assert deferrals <= len(items) + sum(u for _, _, u in items)
    assert_rate(sends, rate, burst_, lim.spread_s)


def test_the_issue_s_burst_is_linear_not_quadratic() -> None:
    """The finding: a burst of N to Slack (1/s) was N²/2 rate_limited attempts; now N - 1, when
    the burst is read together (the deliver queue hands its SEV1s over first)."""
    urgent = [i % 10 == 0 for i in range(1000)]
    order = sorted(range(1000), key=lambda i: not urgent[i])  # the queue: SEV1 first, then arrival
    lim = RateLimiter(1.0, 1)
    sends, deferrals, per_key = burst(lim, [(0.0, f"c{i}", urgent[i]) for i in order])
    assert len(sends) == 1000 and deferrals == 999 and set(per_key.values()) == {1}
    assert sends[-1][0] == pytest.approx(999.0, abs=1.0)  # drained at 1/s
    assert all(t <= 100.5 for t, _, u in sends if u)  # the 100 SEV1s in the first 100 s


def test_sev1s_after_a_burst_jump_it_at_one_deferral_each() -> None:
    """SEV1s arriving once 500 lower-severity commands have their slots: each takes the first
    slot free of SEV1s and moves one reserved command to the end (one more deferral each)."""
    lim = RateLimiter(1.0, 1)
    items = [(0.0, f"low{i}", False) for i in range(500)] + [(0.5, f"sev1-{i}", True) for i in range(20)]
    sends, deferrals, per_key = burst(lim, items)
    assert len(sends) == 520
    assert deferrals == 499 + 20 + 20  # every SEV1 waits for its slot, and each moves one other
    assert max(per_key.values()) == 2
    sev1 = [t for t, _, u in sends if u]
    assert max(sev1) <= 21.5  # all twenty within ~20 s, not behind the 500


# ---------------------------------------------------------------- the gate


def test_gate_peeks_at_the_breaker_and_takes_the_probe_only_with_the_slot() -> None:
    br = CircuitBreaker(1, 10.0)
    gate = Gate(br, RateLimiter(1.0, 1))
    assert gate.circuit_wait(0.0) is None
    assert gate.admit("a", False, 0.0) == 0.0
    br.record(False, 0.0)  # open until 10
    assert gate.circuit_wait(4.0) == pytest.approx(6.0)
    assert br.state is BreakerState.OPEN
    assert gate.circuit_wait(10.0) is None  # a probe may go ...
    assert br.state is BreakerState.OPEN  # ... not taken by asking
    assert gate.admit("b", False, 10.0) == 0.0
    assert br.state is BreakerState.HALF_OPEN  # taken with the slot
    assert gate.circuit_wait(10.0) == pytest.approx(1.0)  # the probe is out: the others ask again soon
    assert gate.circuit_wait(14.0) == pytest.approx(4.0)  # ... later the longer it takes
    assert gate.circuit_wait(18.0) == pytest.approx(2.0)  # ... never past its replacement
    assert gate.circuit_spread_s == pytest.approx(1.0) and gate.rate_spread_s == pytest.approx(0.2)
    # a command the rate limit defers takes no probe
    br2, lim2 = CircuitBreaker(1, 10.0), RateLimiter(1.0, 1)
    gate2 = Gate(br2, lim2)
    br2.record(False, 0.0)
    lim2.admit("z", 10.0)  # the rate spent at the probe time
    assert gate2.circuit_wait(10.0) is None
    assert gate2.admit("p", False, 10.0) == pytest.approx(1.0)
    assert br2.state is BreakerState.OPEN and br2.would_allow(10.0)  # the probe is still there
    assert gate2.admit("p", False, 11.0) == 0.0 and br2.state is BreakerState.HALF_OPEN
    assert Gate(CircuitBreaker()).admit("x", True, 0.0) == 0.0  # no limiter: the breaker only

