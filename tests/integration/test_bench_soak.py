"""The soak scenario (`tocsin bench --only soak`), run for seconds: every alert delivered, and
each figure measured at the start and at the end."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tocsin.bench.soak import soak

pytestmark = pytest.mark.integration


async def test_a_short_soak_measures_the_start_and_the_end(tmp_path: Path) -> None:
    lines: list[str] = []
    out = await soak(0.25, 20, lines.append, tmp_path, window_s=4, warmup_s=2)
    assert set(out) == {"soak_latency_p50_end_vs_start", "soak_latency_p99_end_vs_start", "soak_delivered",
                        "soak_worker_rss_end_vs_start", "soak_broker_rss_end_vs_start",
                        "soak_worker_cpu_end_vs_start", "soak_broker_cpu_end_vs_start"}
    assert out["soak_delivered"]["ratio"] == 1
    p99 = out["soak_latency_p99_end_vs_start"]
    assert p99["alerts"] == 300 and p99["delivered"] == 300
    assert p99["fingerprints"] == 300  # 20/s × a 600 s window: each alert a fingerprint's first
    for r in out.values():
        assert r["value"] > 0 and r["baseline"] > 0 and not math.isnan(r["ratio"])
    assert out["soak_broker_rss_end_vs_start"]["broker_mb_per_million_alerts"] is not None
    assert any(line.startswith("soak: 0.25 min at 20/s, 300/300 delivered") for line in lines)
