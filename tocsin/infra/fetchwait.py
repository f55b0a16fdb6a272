"""How long a consumer's fetch may wait on the broker, raised when the broker starves it.

A fetch response is *starved* when no partition in it came back with records although the
broker's high watermark of one of them lies past the offset fetched: the records are there
and the broker did not send them. Kafka never does that (a fetch answers with what the
partition holds, whatever its wait). Tansu's memory storage, the embedded broker of `make dev`
and the tests, does, once its partitions fill: each fetch lists every record batch of the
partition and stops listing when the fetch's wait runs out, answering nothing past where it
stopped. A consumer at the end of a partition holding more batches than the broker lists in
the wait (about 40,000 in 10 ms on the project's machine) is then never answered again: the
worker stalled with its records on the broker (the soak's stall, #19).

``FetchWait`` is the decision, pure: two starved responses in a row double the wait (up to
``cap_ms``); ``decay_s`` without a starved response halves it back towards the configured
wait. A longer wait costs nothing while records flow (the broker answers as soon as a pass
finds them); an idle consumer waits for the next pass, up to half the wait.

An *idle* response (no records, and none waiting past the offsets fetched) is the other
case. The readers on an alert's way fetch with a short wait (TOCSIN_FETCH_MAX_WAIT_MS, 10 ms),
because Tansu does not answer a waiting fetch when records arrive, only at its next pass (half
the wait left, then half of that, ...). Idle, that is a hundred fetches a second per reader,
each encoded and decoded in Python and served by the broker: an idle worker used 21 % of a
core (36 % in one run) and the broker serving it 32 %, for nothing (#19); 11 % and 14 % with
the idle wait. ``idle_streak`` idle responses in a row (a quarter of a second of silence at
10 ms) raise the wait to ``idle_ms``; the first response with records puts it back. The first alert after a silence then waits for the
broker's next pass, at most ``idle_ms / 2``; against Kafka, which answers a waiting fetch as
soon as records arrive, it costs nothing.

infra/faust_compat.py applies it to every aiokafka fetcher in a worker."""

from __future__ import annotations

from dataclasses import dataclass, field

#: the longest wait a starved fetcher is raised to (ms)
CAP_MS = 5000
#: starved responses in a row before the wait is raised (one can be the broker's gap
#: between raising a partition's high watermark and storing its batch)
STREAK = 2
#: seconds without a starved response before the wait is halved back
DECAY_S = 30.0
#: the wait of a fetcher whose partitions are idle (ms), and after how many idle responses
IDLE_MS = 100
IDLE_STREAK = 25


@dataclass
class FetchWait:
    """One fetcher's wait. ``observe`` takes each fetch response's verdict and returns the
    wait for the next fetch (ms). ``wait_ms`` is the wait starvation raised it to; an idle
    fetcher waits at least ``idle_ms``."""

    base_ms: int
    cap_ms: int = CAP_MS
    streak: int = STREAK
    decay_s: float = DECAY_S
    idle_ms: int = IDLE_MS
    idle_streak: int = IDLE_STREAK
    wait_ms: int = field(init=False)
    _idle: int = field(default=0, init=False)
    _starved: int = field(default=0, init=False)
    _since: float | None = field(default=None, init=False)  # when the wait last moved or starved

    def __post_init__(self) -> None:
        self.base_ms = max(1, self.base_ms)
        self.cap_ms = max(self.base_ms, self.cap_ms)
        self.wait_ms = self.base_ms

    @property
    def effective_ms(self) -> int:
        """The wait of the next fetch: the starvation's, or the idle one once idle."""
        return max(self.wait_ms, self.idle_ms) if self._idle >= self.idle_streak else self.wait_ms

    def observe(self, starved: bool, now: float, idle: bool = False) -> int:
        """``starved``: the response was starved; ``idle``: it had no records and none were
        waiting (neither: it had records)."""
        self._idle = self._idle + 1 if idle and not starved else 0
        if starved:
            self._starved += 1
            self._since = now
            if self._starved >= self.streak and self.wait_ms < self.cap_ms:
                self.wait_ms = min(self.cap_ms, self.wait_ms * 2)
                self._starved = 0
            return self.effective_ms
        self._starved = 0
        if self.wait_ms > self.base_ms and self._since is not None and now - self._since >= self.decay_s:
            self.wait_ms = max(self.base_ms, self.wait_ms // 2)
            self._since = now
        return self.effective_ms
