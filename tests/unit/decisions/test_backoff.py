"""decisions.backoff: the waits between tries, and ``retry`` (no clock: the sleep is recorded)."""

from __future__ import annotations

import asyncio
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tocsin.decisions.backoff import Backoff, Failure, retry

# ------------------------------------------------------------------------------ the waits


@pytest.mark.parametrize(("backoff", "failures", "rand", "wanted"), [
    (Backoff(0.1, 5.0), 1, 0.0, 0.1),
    (Backoff(0.1, 5.0), 2, 0.0, 0.2),
    (Backoff(0.1, 5.0), 6, 0.0, 3.2),
    (Backoff(0.1, 5.0), 7, 0.0, 5.0),  # 6.4 capped
    (Backoff(0.1, 5.0), 10**6, 0.0, 5.0),  # the power overflows: capped all the same
    (Backoff(0.5, 30.0, jitter=0.5), 1, 0.0, 0.5),
    (Backoff(0.5, 30.0, jitter=0.5), 1, 0.999, 0.25025),  # down to about half
    (Backoff(0.5, 30.0, jitter=0.5), 3, 0.5, 1.5),
    (Backoff(0.5, 30.0, jitter=0.5), 8, 1.0, 15.0),  # half of the cap
    (Backoff(1.0, 1.0), 50, 0.0, 1.0),  # constant
    (Backoff(1.0, 100.0, factor=3.0), 3, 0.0, 9.0),
    (Backoff(1.0, 100.0, factor=1.0), 9, 0.0, 1.0),
    (Backoff(2.0, 8.0, jitter=1.0), 2, 0.5, 2.0),
])
def test_delay(backoff: Backoff, failures: int, rand: float, wanted: float) -> None:
    assert backoff.delay(failures, rand) == pytest.approx(wanted)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"first_s": 0, "max_s": 1}, "0 < first_s <= max_s"),
    ({"first_s": -1, "max_s": 1}, "0 < first_s <= max_s"),
    ({"first_s": 2, "max_s": 1}, "0 < first_s <= max_s"),
    ({"first_s": 1, "max_s": 2, "factor": 0.5}, "factor"),
    ({"first_s": 1, "max_s": 2, "jitter": 1.5}, "jitter"),
    ({"first_s": 1, "max_s": 2, "jitter": -0.1}, "jitter"),
])
def test_a_bad_backoff_is_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)


def test_failures_count_from_one() -> None:
    with pytest.raises(ValueError, match="count from 1"):
        Backoff(1, 2).delay(0)


def test_delays_double_up_to_the_cap() -> None:
    delays = Backoff(0.02, 0.08).delays()
    assert [next(delays) for _ in range(6)] == pytest.approx([0.02, 0.04, 0.08, 0.08, 0.08, 0.08])


backoffs = st.builds(
    lambda first, span, factor, jitter: Backoff(first, first * span, factor, jitter),
    st.floats(1e-3, 60), st.floats(1, 1e4), st.floats(1, 4), st.floats(0, 1))


@given(backoff=backoffs, failures=st.integers(1, 2000), rand=st.floats(0, 1))
def test_a_delay_stays_between_its_jittered_floor_and_the_cap(backoff: Backoff, failures: int, rand: float) -> None:
    d = backoff.delay(failures, rand)
    assert backoff.first_s * (1 - backoff.jitter) * (1 - 1e-9) <= d <= backoff.max_s * (1 + 1e-9)
    assert math.isfinite(d)


@given(backoff=backoffs, failures=st.integers(1, 2000))
def test_without_jitter_the_delay_never_shrinks(backoff: Backoff, failures: int) -> None:
    assert backoff.delay(failures) <= backoff.delay(failures + 1)
    assert backoff.delay(failures) >= backoff.delay(failures, 1.0)  # the jitter only shortens


@given(backoff=backoffs, rands=st.lists(st.floats(0, 1), min_size=1, max_size=30))
def test_delays_are_delay_after_each_failure(backoff: Backoff, rands: list[float]) -> None:
    draws = iter(rands)
    delays = backoff.delays(lambda: next(draws))
    assert [next(delays) for _ in rands] == [backoff.delay(n, r) for n, r in enumerate(rands, 1)]


# ------------------------------------------------------------------------------ retry


class Flaky:
    """Fails with ``errors`` in turn, then returns ``"done"``."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


class Sleeps:
    def __init__(self) -> None:
        self.slept: list[float] = []

    async def __call__(self, s: float) -> None:
        self.slept.append(s)


@pytest.mark.parametrize(("errors", "max_retries", "raised", "calls", "slept", "reported"), [
    ([], None, None, 1, [], []),
    ([OSError("a")], None, None, 2, [1.0], [(1, 1.0)]),
    ([OSError("a")] * 4, None, None, 5, [1.0, 2.0, 4.0, 4.0], [(1, 1.0), (2, 2.0), (3, 4.0), (4, 4.0)]),
    ([OSError("a")] * 3, 2, OSError, 3, [1.0, 2.0], [(1, 1.0), (2, 2.0), (3, None)]),
    ([OSError("a")], 0, OSError, 1, [], [(1, None)]),
    ([OSError("a")] * 2, 2, None, 3, [1.0, 2.0], [(1, 1.0), (2, 2.0)]),
    ([OSError("a"), KeyError("refused")], None, KeyError, 2, [1.0], [(1, 1.0)]),  # refused by retry_if
    ([KeyError("refused")], None, KeyError, 1, [], []),
])
async def test_retry(errors: list[Exception], max_retries: int | None, raised: type[Exception] | None,
                     calls: int, slept: list[float], reported: list[tuple[int, float | None]]) -> None:
    call, sleep, failures = Flaky(*errors), Sleeps(), []
    run = retry(call, Backoff(1.0, 4.0), retry_if=lambda exc: not isinstance(exc, KeyError),
                on_failure=failures.append, max_retries=max_retries, sleep=sleep, rand=lambda: 0.0)
    if raised is None:
        assert await run == "done"
    else:
        with pytest.raises(raised):
            await run
    assert call.calls == calls and sleep.slept == slept
    assert [(f.failures, f.delay_s) for f in failures] == reported
    assert all(isinstance(f, Failure) and isinstance(f.error, OSError) for f in failures)


async def test_retry_draws_the_jitter_from_rand() -> None:
    sleep = Sleeps()
    draws = iter([0.0, 1.0, 0.5])
    await retry(Flaky(OSError(), OSError(), OSError()), Backoff(1.0, 10.0, jitter=0.5), sleep=sleep,
                rand=lambda: next(draws))
    assert sleep.slept == [1.0, 1.0, 3.0]


async def test_a_cancellation_is_not_retried() -> None:
    sleep = Sleeps()
    with pytest.raises(asyncio.CancelledError):
        await retry(Flaky(asyncio.CancelledError()), Backoff(1.0, 2.0), sleep=sleep)  # type: ignore[arg-type]
    assert sleep.slept == []


@given(fails=st.integers(0, 40), max_retries=st.none() | st.integers(0, 40),
       rands=st.lists(st.floats(0, 1), min_size=41, max_size=41))
async def test_retry_waits_the_backoff_after_each_failure_it_retries(
        fails: int, max_retries: int | None, rands: list[float]) -> None:
    backoff = Backoff(0.1, 5.0, jitter=0.5)
    call, sleep, failures = Flaky(*[OSError(str(i)) for i in range(fails)]), Sleeps(), []
    draws = iter(rands)
    gives_up = max_retries is not None and fails > max_retries
    try:
        assert await retry(call, backoff, on_failure=failures.append, max_retries=max_retries, sleep=sleep,
                           rand=lambda: next(draws)) == "done"
        assert not gives_up
    except OSError:
        assert gives_up
    retried = min(fails, max_retries) if gives_up and max_retries is not None else fails
    assert call.calls == retried + 1
    assert sleep.slept == [backoff.delay(n, r) for n, r in zip(range(1, retried + 1), rands, strict=False)]
    assert [f.failures for f in failures] == list(range(1, len(failures) + 1))
    assert len(failures) == retried + gives_up
