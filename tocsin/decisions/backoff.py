"""The waits between tries of an operation that may pass: a broker away or stalled, ClickHouse
refusing. ``Backoff`` says how long to wait after the n-th failure in a row (doubling from
``first_s`` up to ``max_s``, each wait shortened at random by up to ``jitter`` of itself);
``retry`` awaits an operation until it succeeds, waiting so between tries.

The sleep and the randomness are parameters, so a test runs the waits without a clock.

Not the retries of a notification: those travel through topics on a schedule from the
routing file (``decisions.retry``), never as a sleep.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """``first_s``, then ``factor`` times longer after each failure, never over ``max_s``;
    ``jitter`` (0 to 1) shortens each wait by up to that fraction of it, at random."""

    first_s: float
    max_s: float
    factor: float = 2.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.max_s:
            raise ValueError(f"backoff: expected 0 < first_s <= max_s, got {self.first_s} and {self.max_s}")
        if self.factor < 1:
            raise ValueError(f"backoff: expected a factor of at least 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff: expected a jitter from 0 to 1, got {self.jitter}")

    def delay(self, failures: int, rand: float = 0.0) -> float:
        """The wait after ``failures`` failures in a row (1: after the first); ``rand``, from 0
        to 1, draws the jitter (0: the whole wait)."""
        if failures < 1:
            raise ValueError(f"backoff: failures count from 1, got {failures}")
        try:
            base = min(self.max_s, self.first_s * self.factor ** (failures - 1))
        except OverflowError:  # long past max_s
            base = self.max_s
        return base * (1.0 - self.jitter * rand)

    def delays(self, rand: Callable[[], float] = random.random) -> Iterator[float]:
        """The waits after the first, second, ... failure in a row, without end."""
        return (self.delay(n, rand()) for n in itertools.count(1))


@dataclass(frozen=True)
class Failure:
    """One failed try, as ``retry`` reports it: the error, how many tries failed in a row, and
    the wait before the next try (None: there is none, the error is raised)."""

    error: Exception
    failures: int
    delay_s: float | None


async def retry(
    call: Callable[[], Awaitable[T]],
    backoff: Backoff,
    *,
    retry_if: Callable[[Exception], bool] = lambda _: True,
    on_failure: Callable[[Failure], object] = lambda _: None,
    max_retries: int | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> T:
    """Await ``call()`` until it returns, waiting ``backoff`` between tries; its result.

    An exception that ``retry_if`` refuses is raised at once, without a report. Every other is
    reported to ``on_failure`` and tried again, up to ``max_retries`` times (None: for ever);
    the failure after the last retry is reported with no wait and raised. What is not an
    ``Exception`` (a cancellation) passes at once."""
    failures = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            if not retry_if(exc):
                raise
            failures += 1
            if max_retries is not None and failures > max_retries:
                on_failure(Failure(exc, failures, None))
                raise
            delay = backoff.delay(failures, rand())
            on_failure(Failure(exc, failures, delay))
        await sleep(delay)
