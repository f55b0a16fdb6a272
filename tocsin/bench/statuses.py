"""The ``api_alerts`` scenario: ``GET /api/alerts`` with a million statuses in the table.

The statuses are the worker's own kind (``agents/lifecycle.empty_status`` filled as the fold
fills it): 11 types, 200 symbols, 50 strategies, last seen over the past week with
microseconds, 60 % active, 10 % acknowledged, 25 % resolved, 5 % dismissed. They go into the
status table's index the way the store puts them (``StatusIndex.put``, with a partition), and
each query runs as the view runs it: ``StatusIndex.list_alerts`` on the event loop (a thread
when the index is large), then the JSON body; between two queries 1,500 statuses change (a
fingerprint seen again just now: fewer than ``APPLY_AT``, so the next query applies them,
on the event loop, within its time). Measured per query: the answer's
time (median of ``rounds``) and the longest the event loop waited meanwhile (a 1 ms ticker's
lateness). Baseline: the list as it was made before the index, ``api.list_alerts`` over the
table's dicts (one round each).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import os
import random
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from ..agents.lifecycle import empty_status
from ..core.status_index import StatusIndex
from ..web.api import list_alerts, parse_filters

Log = Callable[[str], None]

TYPES = ("order_rejected", "order_filled", "position_limit_hit", "daily_loss_limit", "kill_switch_activated",
         "order_failed_permanently", "component_unhealthy", "component_recovered", "db_write_fail",
         "storage_threshold", "alert_delivery_failed")
NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
WEEK_US = 7 * 86400 * 1_000_000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _iso(us: int) -> str:
    return (EPOCH + dt.timedelta(microseconds=us)).isoformat().replace("+00:00", "Z")


def synthetic(n: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    now_us = (NOW - EPOCH) // dt.timedelta(microseconds=1)
    for i in range(n):
        typ = TYPES[i % len(TYPES)]
        symbol = f"SYM{rng.randrange(200):03d}-USD"
        strategy = f"strat-{i % 50}"
        fp = f"{typ}:ACC{i:07d}:{symbol}:{strategy}"
        last = now_us - rng.randrange(WEEK_US)
        r = rng.random()
        state = "active" if r < 0.6 else "acknowledged" if r < 0.7 else "resolved" if r < 0.95 else "dismissed"
        occ = rng.randint(1, 40)
        alert_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        s = empty_status(fp)
        s.update(alert_id=alert_id, type=typ, severity=1 + i % 3, summary=f"{typ} on {symbol} for ACC{i:07d}",
                 status=state, occurrences=occ, suppressed_count=occ - 1,
                 first_seen=_iso(last - rng.randrange(3_600_000_000)), last_seen=_iso(last),
                 requires_action=i % 7 == 0,
                 entity={"account_id": f"ACC{i:07d}", "symbol": symbol, "strategy_id": strategy},
                 source="oms", acknowledged_by="ann" if state == "acknowledged" else None,
                 status_changed_at=_iso(last + 1_000_000) if state != "active" else None,
                 notified_alert_id=alert_id)
        if state == "resolved":
            s["resolved_by"] = "ann"
        yield s


def queries() -> dict[str, dict[str, Any]]:
    day = (NOW - dt.timedelta(days=1)).isoformat()
    two = (NOW - dt.timedelta(days=2)).isoformat()
    raw = {
        "dashboard list (first 50)": {"offset": "0", "limit": "50"},
        "dashboard count (active,acknowledged; limit 1)": {"status": "active,acknowledged", "limit": "1"},
        "dashboard list, SEV1 active (first 50)": {"severity": "1", "status": "active", "limit": "50"},
        "type=order_rejected": {"type": "order_rejected"},
        "symbol (1 of 200)": {"symbol": "SYM007-USD"},
        "strategy_id & status=resolved": {"strategy_id": "strat-7", "status": "resolved"},
        "since a day ago": {"since": day},
        "a day's window, SEV2": {"since": two, "until": day, "severity": "2"},
        "deep page (offset 500,000)": {"offset": "500000", "limit": "50"},
        "last page (offset 999,500, limit 500)": {"offset": "999500", "limit": "500"},
    }
    return {name: parse_filters(q) for name, q in raw.items()}


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def _ticker(stop: asyncio.Event, late: list[float]) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.001)
        late.append(time.perf_counter() - t - 0.001)


#: the queries timed before the index too in a quick run (each takes seconds), beside the slowest
QUICK_BASELINE = ("dashboard list (first 50)",)


async def api_alerts(n: int, log: Log, rounds: int = 5, quick: bool = False) -> dict[str, Any]:
    gc.collect()
    before = rss_mb()
    index = StatusIndex()
    t0 = time.perf_counter()
    for i, s in enumerate(synthetic(n)):
        index.put(s["fingerprint"], s, i % 4)
    index.apply()
    gc.collect()
    index_mb = rss_mb() - before
    log(f"api_alerts: {n:,} statuses into the index in {time.perf_counter() - t0:.1f} s, {index_mb:.0f} MB")
    qs = queries()
    fps = list(index)
    rng = random.Random(9)
    newest = (NOW - EPOCH) // dt.timedelta(microseconds=1)

    def seen_again(k: int) -> None:
        """``k`` statuses folded again, as the lifecycle agent writes them: seen just now."""
        nonlocal newest
        for fp in rng.sample(fps, k):
            s = index[fp]
            newest += rng.randrange(1, 2_000)
            s.update(last_seen=_iso(newest), occurrences=s["occurrences"] + 1,
                     suppressed_count=s["suppressed_count"] + 1)
            index.put(fp, s, index.partition_of(fp) or 0)

    await index.list_alerts(qs["dashboard list (first 50)"])  # the thread pool started, numpy warm
    results: dict[str, dict[str, float]] = {}
    for name, f in qs.items():
        times, lates, total = [], [], 0
        for _ in range(rounds):
            seen_again(1500)  # fewer than APPLY_AT: the query applies them, on the event loop
            stop, late = asyncio.Event(), [0.0]
            tick = asyncio.ensure_future(_ticker(stop, late))
            await asyncio.sleep(0.002)
            t = time.perf_counter()
            body = orjson.dumps(await index.list_alerts(f), default=str)
            times.append(time.perf_counter() - t)
            stop.set()
            await tick
            lates.append(max(late))
            total = orjson.loads(body)["total"]
        results[name] = {"ms": statistics.median(times) * 1000, "loop_ms": statistics.median(lates) * 1000,
                         "loop_max_ms": max(lates) * 1000, "total": total}
        log(f"api_alerts: {name}: {results[name]['ms']:.1f} ms (the event loop waited {results[name]['loop_ms']:.1f} "
            f"ms, at most {results[name]['loop_max_ms']:.1f}), total {total:,}")
    # the list as it was made before: the table's dicts copied, filtered and sorted
    dicts = {s["fingerprint"]: s for s in (index[fp] for fp in list(index))}
    gc.collect()
    dicts_mb = rss_mb() - before - index_mb
    worst = max(results, key=lambda k: results[k]["ms"])
    old: dict[str, float] = {}
    for name, f in qs.items():
        if quick and name not in QUICK_BASELINE and name != worst:
            continue
        t = time.perf_counter()
        orjson.dumps(list_alerts([v for v in dicts.values() if isinstance(v, dict)], f), default=str)
        old[name] = (time.perf_counter() - t) * 1000
        log(f"api_alerts: {name}, before the index: {old[name]:.0f} ms")
    dash = "dashboard list (first 50)"
    per_query = {k: {"ms": round(v["ms"], 2), "loop_ms": round(v["loop_ms"], 2),
                     "loop_max_ms": round(v["loop_max_ms"], 2), "total": v["total"],
                     "before_ms": round(old[k], 1) if k in old else None} for k, v in results.items()}

    def res(value: float, baseline: float, unit: str, **extra: Any) -> dict[str, Any]:
        return {"value": round(value, 2), "baseline": round(baseline, 2),
                "ratio": round(value / baseline, 4) if baseline else None, "unit": unit, **extra}

    return {
        "api_alerts_dashboard_ms": res(
            results[dash]["ms"], old[dash], "ms", statuses=n, rounds=rounds, queries=per_query,
            note="GET /api/alerts's work (index query + JSON) with 1M statuses, the dashboard's list, "
                 "1,500 statuses changed before each; baseline = api.list_alerts over the table's dicts"),
        "api_alerts_worst_query_ms": res(
            results[worst]["ms"], old[worst], "ms", query=worst,
            note="the slowest of the scenario's queries (target < 50 ms); baseline = the same before the index"),
        "api_alerts_event_loop_wait_ms": res(
            max(v["loop_ms"] for v in results.values()), max(old.values()), "ms",
            max_ms=round(max(v["loop_max_ms"] for v in results.values()), 2),
            note="longest the event loop waited during a query (a 1 ms ticker's lateness; the median over "
                 "the rounds, of the query where it is longest; max_ms: the longest of any round); baseline = "
                 "the slowest query before the index, all of it on the event loop"),
        "memory_status_table_per_million": res(
            index_mb / n * 1_000_000, dicts_mb / n * 1_000_000, "MB", statuses=n,
            note="RSS of the status index (records and columns) vs the same statuses as the dicts "
                 "Faust's memory store held"),
    }
