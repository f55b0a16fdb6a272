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


@dataclass
class FetchWait:
    """One fetcher's wait. ``observe`` takes each fetch response's verdict and returns the
    wait for the next fetch (ms)."""

    base_ms: int
    cap_ms: int = CAP_MS
    streak: int = STREAK
    decay_s: float = DECAY_S
    wait_ms: int = field(init=False)
    _starved: int = field(default=0, init=False)
    _since: float | None = field(default=None, init=False)  # when the wait last moved or starved

    def __post_init__(self) -> None:
        self.base_ms = max(1, self.base_ms)
        self.cap_ms = max(self.base_ms, self.cap_ms)
        self.wait_ms = self.base_ms

    def observe(self, starved: bool, now: float) -> int:
        if starved:
            self._starved += 1
            self._since = now
            if self._starved >= self.streak and self.wait_ms < self.cap_ms:
                self.wait_ms = min(self.cap_ms, self.wait_ms * 2)
                self._starved = 0
            return self.wait_ms
        self._starved = 0
        if self.wait_ms > self.base_ms and self._since is not None and now - self._since >= self.decay_s:
            self.wait_ms = max(self.base_ms, self.wait_ms // 2)
            self._since = now
        return self.wait_ms
