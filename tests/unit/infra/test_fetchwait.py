"""The fetch wait a starved fetcher is raised to (tocsin/infra/fetchwait.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tocsin.infra.fetchwait import FetchWait

S, OK = True, False


@pytest.mark.parametrize(("base", "verdicts", "waits"), [
    # answered fetches never move the wait
    (10, [OK, OK, OK], [10, 10, 10]),
    # one starved response alone is not enough (the broker's gap between a high watermark and its batch)
    (10, [S, OK, S, OK], [10, 10, 10, 10]),
    # two in a row double it, and each two more double it again
    (10, [S, S], [10, 20]),
    (10, [S, S, S, S, S, S], [10, 20, 20, 40, 40, 80]),
    # up to the cap, never past it
    (3000, [S, S, S, S], [3000, 5000, 5000, 5000]),
    # a wait of 0 counts as 1
    (0, [S, S], [1, 2]),
])
def test_the_wait_by_verdicts(base: int, verdicts: list[bool], waits: list[int]) -> None:
    w = FetchWait(base)
    assert [w.observe(v, float(i)) for i, v in enumerate(verdicts)] == waits


def test_the_wait_halves_back_after_the_decay_without_a_starved_response() -> None:
    w = FetchWait(10, decay_s=30)
    w.observe(S, 0); w.observe(S, 1); w.observe(S, 2); w.observe(S, 3)  # noqa: E702
    assert w.wait_ms == 40
    assert w.observe(OK, 32.9) == 40  # 29.9 s since the last starved one
    assert w.observe(OK, 33.0) == 20
    assert w.observe(OK, 62.9) == 20  # the next halving 30 s after the last
    assert w.observe(OK, 63.0) == 10
    assert w.observe(OK, 500.0) == 10  # never below the configured wait


def test_a_starved_response_restarts_the_decay() -> None:
    w = FetchWait(10, decay_s=30)
    w.observe(S, 0); w.observe(S, 1)  # noqa: E702
    assert w.wait_ms == 20
    w.observe(S, 20)  # starved again, one alone: no raise, but the decay counts from here
    assert w.observe(OK, 40) == 20
    assert w.observe(OK, 50) == 10


@given(base=st.integers(0, 6000), cap=st.integers(1, 10_000),
       steps=st.lists(st.tuples(st.booleans(), st.floats(0, 100)), max_size=60))
def test_the_wait_stays_between_the_configured_wait_and_the_cap(
        base: int, cap: int, steps: list[tuple[bool, float]]) -> None:
    w = FetchWait(base, cap_ms=cap)
    lo, hi = max(1, base), max(1, base, cap)
    now, last = 0.0, w.wait_ms
    for starved, dt in steps:
        now += dt
        wait = w.observe(starved, now)
        assert lo <= wait <= hi
        # it rises only on a starved response, and falls only on an answered one
        assert wait == last or (wait > last) == starved
        last = wait


@given(st.lists(st.booleans(), max_size=60))
def test_it_never_rises_without_two_starved_responses_in_a_row(verdicts: list[bool]) -> None:
    w = FetchWait(10)
    prev = [OK] + verdicts
    for i, v in enumerate(verdicts):
        before = w.wait_ms
        after = w.observe(v, 0.0)
        if after > before:
            assert v and prev[i]


ID = "idle"  # a response with no records and none waiting
REC = "records"


def run(w: FetchWait, verdicts: list[str]) -> list[int]:
    return [w.observe(False, float(i), idle=v == ID) for i, v in enumerate(verdicts)]


@pytest.mark.parametrize(("streak", "verdicts", "waits"), [
    # idle responses raise the wait to the idle one once there were ``idle_streak`` in a row
    (3, [ID, ID, ID, ID], [10, 10, 100, 100]),
    # a response with records puts it back at once
    (3, [ID, ID, ID, REC, ID], [10, 10, 100, 10, 10]),
    # and the count starts again
    (2, [ID, REC, ID, ID, ID], [10, 10, 10, 100, 100]),
    # records in between never let it rise
    (2, [ID, REC, ID, REC, ID, REC], [10] * 6),
])
def test_an_idle_fetcher_waits_longer(streak: int, verdicts: list[str], waits: list[int]) -> None:
    assert run(FetchWait(10, idle_ms=100, idle_streak=streak), verdicts) == waits


def test_the_idle_wait_never_shortens_a_longer_one() -> None:
    # Faust's own consumer waits 200 ms: idle changes nothing for it
    assert run(FetchWait(200, idle_ms=100, idle_streak=2), [ID] * 5) == [200] * 5
    # a starved fetcher raised past the idle wait keeps its raise while idle
    w = FetchWait(10, idle_ms=100, idle_streak=2)
    for i in range(16):
        w.observe(True, float(i))
    assert w.wait_ms == 2560
    assert run(w, [ID, ID, ID]) == [2560] * 3


def test_a_starved_response_is_not_idle() -> None:
    w = FetchWait(10, idle_ms=100, idle_streak=2)
    assert w.observe(False, 0, idle=True) == 10
    assert w.observe(True, 1, idle=True) == 10  # starved: the idle count starts again
    assert w.observe(False, 2, idle=True) == 10
    assert w.observe(False, 3, idle=True) == 100


@given(base=st.integers(1, 300), idle_ms=st.integers(1, 300), streak=st.integers(1, 10),
       verdicts=st.lists(st.sampled_from([ID, REC]), max_size=80))
def test_the_idle_wait_follows_the_last_responses(base: int, idle_ms: int, streak: int, verdicts: list[str]) -> None:
    """Without starvation the wait is the configured one, or the longer of it and the idle one
    exactly when the last ``streak`` responses were all idle."""
    w = FetchWait(base, idle_ms=idle_ms, idle_streak=streak)
    for i, wait in enumerate(run(w, verdicts)):
        last = verdicts[max(0, i + 1 - streak):i + 1]
        idle = len(last) == streak and all(v == ID for v in last)
        assert wait == (max(base, idle_ms) if idle else base)
