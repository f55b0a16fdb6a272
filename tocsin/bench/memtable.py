"""RSS of the throttle table's own data for N fingerprints, run in a fresh process.

It holds exactly what Faust's memory store holds for Tocsin's windowed table: the data dict
``{(fingerprint, window_range): (first_alert_key, suppressed)}`` with one shared range tuple
per window (streams/tables.py) and Faust's expiry index ``{(partition, window_end): {keys}}``.
Baseline: the same fingerprints in a plain dict, the least any table of them could hold."""

from __future__ import annotations

import gc
import os
import sys
import uuid
from collections import defaultdict


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def fingerprint(i: int) -> str:
    return f"order_rejected:ACC{i:07d}:BTC-USD:strat-{i % 50}"


def main(n: int, mode: str) -> None:
    gc.collect()
    before = rss_mb()
    if mode == "table":
        data: dict = {}
        expiry: defaultdict = defaultdict(set)
        start = 1_795_000_200.0
        rng = (start, start + 599.9)
        for i in range(n):
            key = (fingerprint(i), rng)
            data[key] = (uuid.uuid4().int >> 64, 0)
            expiry[(i % 4, rng[1])].add(key)
    else:
        plain = {fingerprint(i): None for i in range(n)}  # noqa: F841
    gc.collect()
    print(f"{(rss_mb() - before) / n * 1_000_000:.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
