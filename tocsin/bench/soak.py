"""The soak scenario (``tocsin bench --only soak``, not part of ``--quick``): the embedded stack
(`make dev`'s: the embedded broker, one worker with recording into chdb) fed at a steady rate
for ``minutes`` (30 by default), each alert a new fingerprint routed to one webhook. Measured
at the start and at the end: produce → webhook latency (p50, p99), the worker's and the
broker's resident memory. Each figure's baseline is its value at the start (the first
``window`` after a warm-up); ratio = end / start.

The embedded broker (Tansu 0.6, memory storage) keeps every record of every topic for as
long as it runs: it applies no retention (its memory engine neither deletes records nor
answers DeleteRecords), so its memory grows with what was produced; the scenario reports that
growth per million alerts, the figure that bounds a long-running `make dev`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from ..infra.broker import EmbeddedBroker, free_port
from ..schemas import create_alert, delivery_id_for, dumps
from .peers import HttpReceiver, WorkerProcess, base_env
from .scenarios import LATENCY_ROUTING, Log, Result, cpu_seconds, result
from .scenarios import pct as _pct


def pct(xs: list[float], q: float) -> float:
    return _pct(xs, q) if xs else float("nan")


def rss_mb(pid: int | None) -> float | None:
    """A process's resident memory (MB), from /proc; None when it is gone."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def soak(minutes: float, rate: int, log: Log, tmp: Path, *, window_s: float | None = None,
               warmup_s: float | None = None, population: int | None = None, **settings: Any) -> dict[str, Result]:
    """``rate`` alerts a second for ``minutes``; latency and memory over the first ``window_s``
    after ``warmup_s`` against the last ``window_s`` (defaults: 60 s and 30 s, shortened
    for a run of less than five minutes). ``population``: the fingerprints the alerts cycle
    through (default: ``rate`` × the 600 s throttle window, so that each alert is a
    fingerprint's first in its window and notified, and the worker's state reaches a steady
    size after ten minutes, as a service fleet's would). ``settings``: more of the worker's
    (``base_env``)."""
    seconds = minutes * 60
    population = population or rate * 600
    window = window_s if window_s is not None else min(60.0, seconds / 5)
    warmup = warmup_s if warmup_s is not None else min(30.0, seconds / 10)
    every = min(5.0, window / 4)  # memory samples: a few in each window
    with EmbeddedBroker(f"127.0.0.1:{free_port()}", log_path=tmp / "broker-soak.log") as b:
        recv = await HttpReceiver(keep=False).start()
        route = tmp / "routing-soak.toml"
        route.write_text(LATENCY_ROUTING["webhook"] or "", encoding="utf-8")
        env = base_env(b.bootstrap, "soak", tmp / "soak", TOCSIN_WEBHOOK_DEFAULT_URL=recv.url,
                       TOCSIN_ROUTING_FILE=route, TOCSIN_RECORD_ENABLED="true", **settings)
        w = WorkerProcess(env, tmp / "soak.log", loglevel="warning").start()
        await w.wait_ready()
        broker_pid = b.proc.pid if b.proc else None
        p = AIOKafkaProducer(bootstrap_servers=b.bootstrap, linger_ms=0)
        await p.start()
        sent: dict[str, float] = {}  # delivery_id -> when it was produced
        samples: list[tuple[float, float | None, float | None]] = []  # (s since start, worker MB, broker MB)
        cpu: list[tuple[float, float | None, float | None]] = []  # (s since start, worker CPU-s, broker CPU-s)
        progress: list[tuple[int, int, int]] = []  # (s since start, produced, delivered), each 30 s
        run = uuid.uuid4().hex[:6]
        t0 = time.monotonic()

        async def send(i: int) -> None:
            ts = dt.datetime.now(dt.UTC)
            ev = create_alert("db_write_fail", 2, f"soak {i}", fingerprint=f"soak:{run}:{i % population}",
                              event_timestamp=ts)
            key = f"{ev.fingerprint}:{int(ts.timestamp()) // 600}"
            sent[delivery_id_for(key, "webhook:default", "webhook:default")] = time.time()
            await p.send("soak.alerts", dumps(ev), key=ev.fingerprint.encode())

        async def sample() -> None:
            while True:
                wpid = w.proc.pid if w.proc else None
                samples.append((time.monotonic() - t0, rss_mb(wpid), rss_mb(broker_pid)))
                cpu.append((time.monotonic() - t0, cpu_seconds(wpid), cpu_seconds(broker_pid)))
                if w.proc is not None and w.proc.poll() is not None:
                    raise RuntimeError(f"the soak's worker exited; see {w.log_path}")
                await asyncio.sleep(every)

        def busy(col: int, lo: float, hi: float) -> float:
            """The process's CPU over [lo, hi), in % of one core (from the samples in it)."""
            xs = [(t, v) for t, *vs in cpu if lo <= t < hi and (v := vs[col - 1]) is not None]
            if len(xs) < 2 or xs[-1][0] <= xs[0][0]:
                return float("nan")
            return (xs[-1][1] - xs[0][1]) / (xs[-1][0] - xs[0][0]) * 100

        sampler = asyncio.ensure_future(sample())
        total = int(rate * seconds)
        i = 0
        last_log = t0
        try:
            while i < total:
                if sampler.done():
                    sampler.result()  # the worker exited: raise
                due = int((time.monotonic() - t0) * rate) + 1
                while i < min(due, total):
                    await send(i)
                    i += 1
                if time.monotonic() - last_log >= 30:
                    last_log = time.monotonic()
                    s = samples[-1] if samples else (0, None, None)
                    done = sum(1 for k in sent if k in recv.arrivals)
                    progress.append((round(last_log - t0), i, done))
                    log(f"soak: {last_log - t0:.0f} s, {i:,} alerts, {done:,} delivered; worker {s[1] or 0:.0f} MB, "
                        f"broker {s[2] or 0:.0f} MB, broker CPU {busy(2, last_log - t0 - 30, last_log - t0 + 1):.0f} %")
                await asyncio.sleep(0.01)
            await p.flush()
            deadline = time.monotonic() + 120
            while sum(1 for k in sent if k in recv.arrivals) < len(sent) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
        finally:
            sampler.cancel()
            await p.stop()
            w.stop()
            await recv.stop()
    # latency by when each alert was produced: the first window after the warm-up, the last one
    start_at = min(sent.values()) if sent else 0.0
    end_at = start_at + seconds
    first = [(recv.arrivals[k] - t) * 1000 for k, t in sent.items()
             if k in recv.arrivals and start_at + warmup <= t < start_at + warmup + window]
    last = [(recv.arrivals[k] - t) * 1000 for k, t in sent.items() if k in recv.arrivals and t >= end_at - window]
    delivered = sum(1 for k in sent if k in recv.arrivals)

    def mem(col: int, lo: float, hi: float) -> float:
        xs = [v for s in samples if lo <= s[0] < hi and (v := s[col]) is not None]
        return sum(xs) / len(xs) if xs else float("nan")

    w_start, w_end = mem(1, warmup, warmup + window), mem(1, seconds - window, seconds + 1)
    wc_start, wc_end = busy(1, warmup, warmup + window), busy(1, seconds - window, seconds + 1)
    bc_start, bc_end = busy(2, warmup, warmup + window), busy(2, seconds - window, seconds + 1)
    b_start, b_end = mem(2, warmup, warmup + window), mem(2, seconds - window, seconds + 1)
    b_idle = samples[0][2] if samples and samples[0][2] is not None else float("nan")
    broker_per_million = (b_end - b_idle) / max(len(sent), 1) * 1_000_000
    series = [(round(t), round(wm or 0, 1), round(bm or 0, 1)) for t, wm, bm in samples[::max(1, round(30 / every))]]
    common: dict[str, Any] = {"minutes": minutes, "rate_per_s": rate, "alerts": len(sent), "delivered": delivered,
                              "window_s": window, "warmup_s": warmup, "fingerprints": min(population, len(sent))}
    log(f"soak: {minutes:g} min at {rate}/s, {delivered:,}/{len(sent):,} delivered; p50 {pct(first, .5):.1f} → "
        f"{pct(last, .5):.1f} ms, p99 {pct(first, .99):.1f} → {pct(last, .99):.1f} ms; worker {w_start:.0f} → "
        f"{w_end:.0f} MB, broker {b_start:.0f} → {b_end:.0f} MB ({broker_per_million:.0f} MB per million alerts); "
        f"CPU worker {wc_start:.0f} → {wc_end:.0f} %, broker {bc_start:.0f} → {bc_end:.0f} % of a core")
    return {
        "soak_latency_p50_end_vs_start": result(pct(last, .5), pct(first, .5), "ms", **common),
        "soak_latency_p99_end_vs_start": result(pct(last, .99), pct(first, .99), "ms", **common),
        "soak_worker_rss_end_vs_start": result(w_end, w_start, "MB", **common, rss_every_30s=series),
        "soak_worker_cpu_end_vs_start": result(wc_end, wc_start, "% of a core", **common),
        "soak_broker_cpu_end_vs_start": result(
            bc_end, bc_start, "% of a core", **common,
            note="each fetch costs the embedded broker in proportion to the record batches the partition holds "
                 "(Tansu's memory storage lists them all), so its CPU grows with what it was sent"),
        "soak_delivered": result(delivered, len(sent), "alerts", every_30s=progress,
                                 note="alerts delivered to the webhook of those produced (every_30s: "
                                      "seconds, produced, delivered): a stall shows as a flat delivered"),
        "soak_broker_rss_end_vs_start": result(
            b_end, b_start, "MB", **common, broker_idle_mb=round(b_idle, 1),
            broker_mb_per_million_alerts=round(broker_per_million, 1),
            note="the embedded broker keeps every record (no retention in Tansu's memory storage)"),
    }
