"""RSS of the throttle table's own data for N fingerprints, run in a fresh process.

It fills the worker's real throttle table (Faust's memory store, through
``ThrottleTable.store``, the call the throttle makes): the data
``{(fingerprint, window_range): packed state}`` with one shared range tuple per window, and
Faust's expiry index ``{(partition, window_end): {keys}}``. Baseline: the same fingerprints
in a plain dict, the least any table of them could hold."""

from __future__ import annotations

import gc
import os
import sys
import uuid


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def fingerprint(i: int) -> str:
    return f"order_rejected:ACC{i:07d}:BTC-USD:strat-{i % 50}"


def main(n: int, mode: str) -> None:
    if mode == "table":
        from tocsin.core.settings import Settings
        from tocsin.decisions.throttle import WindowState, alert_key
        from tocsin.streams.app import build

        # the memory store by name: its data is what is measured (RocksDB keeps it off the heap)
        table = build(Settings(kafka_bootstrap="127.0.0.1:1", table_store="memory"), record=False).tables.throttle
        ts = 1_795_000_200.0
    gc.collect()
    before = rss_mb()
    if mode == "table":
        for i in range(n):
            table.store(fingerprint(i), ts, WindowState(alert_key(uuid.uuid4()), 0), i % 4)
        assert len(table) == n
    else:
        plain = {fingerprint(i): None for i in range(n)}  # noqa: F841
    gc.collect()
    print(f"{(rss_mb() - before) / n * 1_000_000:.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
