"""Per-client rate limits of the ingest endpoints (``TOCSIN_INGEST_RATE_PER_S``,
``TOCSIN_INGEST_BURST``): one token bucket (``limits.TokenBucket``) per client, a request
takes one token, an empty bucket answers 429 with the seconds until the next one. Pure: the
clock is a parameter.

A client is its address and the credential it sends (a digest of the ``Authorization``
header): two Prometheus servers behind one proxy with their own credentials are two clients.
The buckets are bounded (``max_clients``, least recently used forgotten first); a forgotten
client starts again with a full bucket, as a new one does.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from .limits import TokenBucket

MAX_CLIENTS = 10_000


def client_key(address: str | None, authorization: str | None) -> str:
    """The client a request comes from: its address and a digest of its credential."""
    digest = hashlib.sha256((authorization or "").encode("utf-8", "replace")).hexdigest()[:16]
    return f"{address or '?'}|{digest}"


class ClientLimits:
    """``rate_per_s`` requests a second per client, ``burst`` at once."""

    def __init__(self, rate_per_s: float, burst: int, max_clients: int = MAX_CLIENTS) -> None:
        TokenBucket(rate_per_s, burst)  # the same checks of the numbers, at start
        if max_clients < 1:
            raise ValueError(f"max_clients must be >= 1, got {max_clients!r}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, client: str, now: float) -> float:
        """0.0: the request may go; else the seconds until this client may send again."""
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = TokenBucket(self.rate_per_s, self.burst)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
        return bucket.take(now)

    def __len__(self) -> int:
        return len(self._buckets)
