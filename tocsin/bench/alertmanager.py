"""Side by side with Alertmanager (issue #19 part 1): the same N distinct alerts through
Debian's Alertmanager 0.25 and through a Tocsin worker, on the same machine in the same run,
each alert ending as one webhook POST to the same receiver (``bench/hookrecv.py``, its own
process).

- **Alertmanager**: ``group_by: ['...']`` (each alert its own group: one POST each),
  ``group_wait: 0s``, ``group_interval: 1s``, ``repeat_interval: 24h``, a webhook receiver;
  the alerts posted to its API v2 (``POST /api/v2/alerts``) in batches of 64, one batch after
  the other, as Prometheus's notifier sends them.
- **Tocsin, Kafka ingest**: the alerts produced to ``P.alerts`` (SEV2, routing SEV2 → webhook
  only, recording on).
- **Tocsin, HTTP ingest**: the Alertmanager alerts posted to the worker's own
  ``POST /api/v2/alerts`` in batches of 64 (an ingest token), the same routing and recording.

Each system is timed from the first alert sent to the last POST received; each alert's
latency is its send time (the POST of its batch, or its produce) to its POST's arrival,
matched by the fingerprint both webhooks carry (Alertmanager's label fingerprint, which
Tocsin's HTTP ingest keeps). CPU-seconds are read from ``/proc`` (``cpu_seconds``) for the
system's process (and, for Tocsin, the embedded broker's separately), from the first send
to the process falling quiet after the last POST (its tail of work: the recorder's inserts),
after one unmeasured warm-up batch of 64. Every alert must arrive exactly once: the missing
and the repeated are counted and reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import gc
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from ..decisions.alertmanager import fingerprint
from ..infra.broker import EmbeddedBroker, free_port
from ..schemas import create_alert, dumps
from .peers import Process, WorkerProcess, base_env
from .scenarios import Log, Result, cpu_seconds, pct

#: what Prometheus's notifier sends in one request (its ``maxBatchSize``)
BATCH = 64
WARMUP = BATCH
#: SEV2 (what both ways in make of these alerts) → the webhook only: one POST an alert
ROUTING = 'always = []\n[severity]\n1 = ["webhook:default"]\n2 = ["webhook:default"]\n3 = []\n'
INGEST_TOKEN = "bench-ingest-token-0123456789"
API_TOKEN = "bench-api-token-0123456789"
MISSING = ("prometheus-alertmanager is not installed (make bench installs Debian's prometheus-alertmanager "
           "where apt-get can)")


def alertmanager_binary() -> str | None:
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


class Hook:
    """The receiver process (``bench/hookrecv.py``) and its control endpoints."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.server = Process([sys.executable, "-m", "tocsin.bench.hookrecv", str(self.port)], log)
        self.session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> Hook:
        self.server.start()
        await self.server.wait_http(f"http://127.0.0.1:{self.port}/stats", timeout=30)
        self.session = aiohttp.ClientSession()
        return self

    async def _call(self, method: str, path: str) -> Any:
        assert self.session is not None
        async with self.session.request(method, f"http://127.0.0.1:{self.port}{path}") as r:
            r.raise_for_status()
            return orjson.loads(await r.read()) if path != "/reset" else None

    async def stats(self) -> dict[str, int]:
        return dict(await self._call("GET", "/stats"))

    async def arrivals(self) -> dict[str, Any]:
        return dict(await self._call("GET", "/arrivals"))

    async def reset(self) -> None:
        await self._call("POST", "/reset")

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        self.server.stop(timeout=15)


def iso(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def postable(n: int, run: str) -> list[tuple[str, dict[str, Any]]]:
    """``n`` distinct firing alerts as Prometheus posts them (API v2), with their fingerprints
    (Alertmanager's, of the labels). Valid for an hour: none resolves during the run."""
    now = dt.datetime.now(dt.UTC)
    out = []
    for i in range(n):
        labels = {"alertname": "BenchSideBySide", "severity": "warning", "instance": f"host-{i}:9100",
                  "job": "bench", "run": run}
        out.append((fingerprint(labels), {
            "labels": labels, "annotations": {"summary": f"side by side {i}"}, "startsAt": iso(now),
            "endsAt": iso(now + dt.timedelta(hours=1)), "generatorURL": f"http://bench/graph?g0.expr=up{{i={i}}}"}))
    return out


def batches(alerts: list[tuple[str, dict[str, Any]]]) -> list[tuple[list[str], bytes]]:
    """The alerts in request bodies of ``BATCH``, encoded before the clock starts."""
    return [([fp for fp, _ in alerts[i:i + BATCH]], orjson.dumps([a for _, a in alerts[i:i + BATCH]]))
            for i in range(0, len(alerts), BATCH)]


async def post_batches(url: str, bodies: list[tuple[list[str], bytes]], sent: dict[str, float],
                       token: str | None = None) -> None:
    """One request after the other, as Prometheus's notifier does; each alert stamped when
    its batch is sent."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as s:
        for fps, body in bodies:
            t = time.time()
            for fp in fps:
                sent[fp] = t
            async with s.post(url, data=body, headers=headers) as r:
                answer = await r.read()
                if r.status != 200:
                    raise RuntimeError(f"POST {url}: {r.status} {answer[:200]!r}")


def kafka_alerts(n: int, run: str) -> list[tuple[str, bytes, bytes]]:
    """``n`` distinct SEV2 alert events: (fingerprint, key, value)."""
    now = dt.datetime.now(dt.UTC)
    out = []
    for i in range(n):
        fp = f"side:{run}:{i}"
        ev = create_alert("db_write_fail", 2, f"side by side {i}", fingerprint=fp, event_timestamp=now,
                          symbol=f"host-{i}:9100")
        out.append((fp, fp.encode(), dumps(ev)))
    return out


async def produce_stamped(bootstrap: str, topic: str, items: list[tuple[str, bytes, bytes]],
                          sent: dict[str, float]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1 << 20)
    await p.start()
    try:
        futs = []
        for fp, key, value in items:
            sent[fp] = time.time()
            futs.append(await p.send(topic, value, key=key))
        await asyncio.gather(*futs)
    finally:
        await p.stop()


class Cpu:
    """CPU-seconds of named processes, from /proc."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def read(self) -> dict[str, float]:
        out = {}
        for name, pid in self.pids.items():
            s = cpu_seconds(pid)
            if s is None:
                raise RuntimeError(f"{name} (pid {pid}) is gone")
            out[name] = s
        return out

    async def pct(self, seconds: float) -> dict[str, float]:
        """Each process's CPU use over ``seconds`` (% of one core)."""
        a, t0 = self.read(), time.monotonic()
        await asyncio.sleep(seconds)
        b, t1 = self.read(), time.monotonic()
        return {k: 100 * (b[k] - a[k]) / (t1 - t0) for k in a}

    async def quiet(self, idle: dict[str, float], margin: float = 5.0, max_s: float = 30.0) -> float:
        """Wait until every process is back near its idle use (two 0.5 s samples within
        ``margin`` points of it): the work of the run is done. Returns the seconds waited."""
        t0 = time.monotonic()
        calm = 0
        while time.monotonic() - t0 < max_s and calm < 2:
            use = await self.pct(0.5)
            calm = calm + 1 if all(use[k] <= idle[k] + margin for k in use) else 0
        return time.monotonic() - t0


async def measure(system: str, n: int, hook: Hook, cpu: Cpu, send: Callable[[dict[str, float]], Awaitable[None]],
                  alive: Callable[[], bool], log: Log) -> dict[str, Any]:
    """Run ``send`` (which stamps each fingerprint's send time) and wait for every alert's
    POST; the figures of one system."""
    await asyncio.sleep(1.0)
    idle = await cpu.pct(2.0)
    await hook.reset()
    gc.collect()
    gc.freeze()  # the bench's own objects out of its collector's walks while it stamps times
    sent: dict[str, float] = {}
    c0 = cpu.read()
    sender = asyncio.ensure_future(send(sent))
    deadline = time.monotonic() + 120 + n / 50
    at_last: dict[str, float] | None = None
    stats: dict[str, int] = {}
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        if sender.done() and sender.exception() is not None:
            raise RuntimeError(f"{system}: sending failed") from sender.exception()
        if not alive():
            raise RuntimeError(f"{system}: the measured process exited")
        stats = await hook.stats()
        if stats["keys"] >= n and sender.done():
            at_last = cpu.read()
            break
    await sender
    if at_last is None:
        at_last = cpu.read()
        log(f"alertmanager scenario: {system}: {stats.get('keys', 0)} of {n} alerts arrived before the deadline")
    waited = await cpu.quiet(idle)
    c1 = cpu.read()
    got = await hook.arrivals()
    arrivals: dict[str, list[float]] = got["arrivals"]
    first_sent = min(sent.values())
    firsts = [arrivals[fp][0] for fp in sent if fp in arrivals]
    last = max(firsts) if firsts else first_sent
    lat = [(arrivals[fp][0] - t) * 1000 for fp, t in sent.items() if fp in arrivals]
    missing = sum(1 for fp in sent if fp not in arrivals)
    repeats = sum(len(arrivals[fp]) - 1 for fp in sent if fp in arrivals)
    elapsed = max(last - first_sent, 1e-3)
    main = next(iter(cpu.pids))
    fig: dict[str, Any] = {
        "n": n, "elapsed_s": round(elapsed, 3), "alerts_per_s": round(len(firsts) / elapsed, 1),
        "cpu_s": round(c1[main] - c0[main], 3), "cpu_s_at_last_post": round(at_last[main] - c0[main], 3),
        "quiet_after_s": round(waited, 1),
        "p50_ms": round(pct(lat, 0.5), 1) if lat else None, "p99_ms": round(pct(lat, 0.99), 1) if lat else None,
        "posts": got["posts"], "alerts_in_posts": got["alerts"], "unmatched_posts": got["unmatched"],
        "delivered": len(firsts), "missing": missing, "repeats": repeats,
        "strays": sum(1 for fp in arrivals if fp not in sent),
        "idle_cpu_pct": {k: round(v, 1) for k, v in idle.items()},
    }
    fig["delivered_once"] = missing == 0 and repeats == 0 and fig["posts"] == n
    fig["alerts_per_cpu_s"] = round(n / fig["cpu_s"], 1) if fig["cpu_s"] > 0 else None
    for other in list(cpu.pids)[1:]:
        fig[f"{other}_cpu_s"] = round(c1[other] - c0[other], 3)
    if "broker" in cpu.pids:
        both = fig["cpu_s"] + fig["broker_cpu_s"]
        fig["alerts_per_cpu_s_with_broker"] = round(n / both, 1) if both > 0 else None
    log(f"alertmanager scenario: {system}: {fig['alerts_per_s']:.0f} alerts/s, {fig['cpu_s']:.2f} CPU-s "
        f"({fig['alerts_per_cpu_s']} alerts/CPU-s"
        + (f"; broker {fig['broker_cpu_s']:.2f} CPU-s" if "broker" in cpu.pids else "")
        + f"), p50 {fig['p50_ms']} ms, p99 {fig['p99_ms']} ms; {fig['posts']} POSTs, "
          f"{fig['delivered']}/{n} delivered, {missing} missing, {repeats} repeats")
    if not fig["delivered_once"]:
        log(f"alertmanager scenario: {system}: NOT every alert delivered exactly once "
            f"({fig['posts']} POSTs for {n} alerts, {missing} missing, {repeats} repeats)")
    return fig


async def warm_up(hook: Hook, send: Callable[[], Awaitable[None]], timeout: float = 60.0) -> None:
    """One unmeasured batch (connections, metadata, first requests), delivered before the run."""
    await hook.reset()
    await send()
    deadline = time.monotonic() + timeout
    while (await hook.stats())["keys"] < WARMUP:
        if time.monotonic() > deadline:
            raise TimeoutError("the warm-up batch was not delivered")
        await asyncio.sleep(0.1)


async def run_alertmanager(binary: str, n: int, hook: Hook, log: Log, tmp: Path) -> dict[str, Any]:
    port = free_port()
    config = tmp / "alertmanager.yml"
    config.write_text(orjson.dumps({  # YAML is a superset of JSON
        "route": {"receiver": "hook", "group_by": ["..."], "group_wait": "0s", "group_interval": "1s",
                  "repeat_interval": "24h"},
        "receivers": [{"name": "hook", "webhook_configs": [{"url": hook.url, "send_resolved": False}]}],
    }).decode())
    am = Process([binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
                  "--cluster.listen-address=", f"--storage.path={tmp / 'alertmanager-data'}", "--log.level=warn"],
                 tmp / "alertmanager.log").start()
    try:
        base = f"http://127.0.0.1:{port}"
        await am.wait_http(f"{base}/-/ready", timeout=30)
        run = uuid.uuid4().hex[:8]
        warm = batches(postable(WARMUP, f"warm-{run}"))
        await warm_up(hook, lambda: post_batches(f"{base}/api/v2/alerts", warm, {}))
        bodies = batches(postable(n, run))
        fig = await measure("Alertmanager", n, hook, Cpu({"alertmanager": am.pid, "receiver": hook.server.pid}),
                            lambda sent: post_batches(f"{base}/api/v2/alerts", bodies, sent), am.alive, log)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            fig["version"] = subprocess.run([binary, "--version"], capture_output=True, text=True,
                                            timeout=10).stdout.splitlines()[0]
        return fig
    finally:
        am.stop(timeout=15)


async def recorded(port: int, n: int, timeout: float = 60.0) -> dict[str, int]:
    """The rows the worker's recorder wrote (alerts and delivery attempts), waited for up to
    ``timeout`` until both reach ``n``; ``at_reading``: the attempts recorded when first asked."""
    out: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_TOKEN}"}) as s:
        while True:
            for table in ("alerts", "delivery_attempts"):
                async with s.post(f"http://127.0.0.1:{port}/api/sql",
                                  json={"sql": f"SELECT count() FROM tocsin.{table} FINAL"}) as r:
                    out[table] = int((await r.json())["rows"][0][0]) if r.status == 200 else -1
            out.setdefault("attempts_at_reading", out["delivery_attempts"])
            if (out["alerts"] >= n and out["delivery_attempts"] >= n) or time.monotonic() > deadline:
                return out
            await asyncio.sleep(0.5)


async def run_tocsin(way: str, n: int, hook: Hook, log: Log, tmp: Path) -> dict[str, Any]:
    """A worker (SEV2 → webhook only, recording on) on its own embedded broker, fed from Kafka
    (``way="kafka"``) or through its Alertmanager API v2 (``way="http"``)."""
    with EmbeddedBroker(f"127.0.0.1:{free_port()}", log_path=tmp / f"broker-am-{way}.log") as b:
        prefix = f"am{way[0]}"
        route = tmp / "routing-am.toml"
        route.write_text(ROUTING, encoding="utf-8")
        env = base_env(b.bootstrap, prefix, tmp / prefix, TOCSIN_WEBHOOK_DEFAULT_URL=hook.url,
                       TOCSIN_ROUTING_FILE=route, TOCSIN_RECORD_ENABLED="true", TOCSIN_API_TOKEN=API_TOKEN,
                       TOCSIN_INGEST_TOKEN=INGEST_TOKEN, TOCSIN_INGEST_RATE_PER_S=1_000_000,
                       TOCSIN_INGEST_BURST=1_000_000)
        w = WorkerProcess(env, tmp / f"{prefix}.log", loglevel="warning").start()
        try:
            await w.wait_ready()
            run = uuid.uuid4().hex[:8]
            ingest = f"http://127.0.0.1:{w.port}/api/v2/alerts"
            send: Callable[[dict[str, float]], Awaitable[None]]
            if way == "kafka":
                warm_items = kafka_alerts(WARMUP, f"warm-{run}")
                await warm_up(hook, lambda: produce_stamped(b.bootstrap, f"{prefix}.alerts", warm_items, {}))
                send = functools.partial(produce_stamped, b.bootstrap, f"{prefix}.alerts", kafka_alerts(n, run))
            else:
                warm = batches(postable(WARMUP, f"warm-{run}"))
                await warm_up(hook, lambda: post_batches(ingest, warm, {}, INGEST_TOKEN))
                bodies = batches(postable(n, run))
                send = functools.partial(post_batches, ingest, bodies, token=INGEST_TOKEN)
            assert w.proc is not None and b.proc is not None
            cpu = Cpu({"worker": w.proc.pid, "broker": b.proc.pid, "receiver": hook.server.pid})
            name = f"Tocsin ({'Kafka' if way == 'kafka' else 'HTTP'} ingest)"
            fig = await measure(name, n, hook, cpu, send, lambda: w.proc is not None and w.proc.poll() is None, log)
            fig["recorded"] = await recorded(w.port, n + WARMUP)
            if min(fig["recorded"]["alerts"], fig["recorded"]["delivery_attempts"]) < n + WARMUP:
                log(f"alertmanager scenario: {name}: recorded {fig['recorded']} of {n + WARMUP}")
            elif fig["recorded"]["attempts_at_reading"] < n + WARMUP:
                log(f"alertmanager scenario: {name}: {fig['recorded']['attempts_at_reading']} attempts of "
                    f"{n + WARMUP} recorded when its CPU was read")
            return fig
        finally:
            w.stop()


def vs(value: float | None, baseline: float | None, unit: str, **extra: Any) -> Result:
    """``result``'s shape, where the baseline (Alertmanager's) may be missing."""
    return {"value": None if value is None else round(value, 3),
            "baseline": None if baseline is None else round(baseline, 3),
            "ratio": round(value / baseline, 3) if value is not None and baseline else None, "unit": unit, **extra}


async def side_by_side(n: int, log: Log, tmp: Path) -> dict[str, Result]:
    """The three systems, one after the other, on the same receiver; results as ratios
    Tocsin / Alertmanager."""
    binary = alertmanager_binary()
    hook = await Hook(tmp / "hookrecv.log").start()
    try:
        am: dict[str, Any] | None = None
        if binary is None:
            log(f"alertmanager scenario: Alertmanager skipped: {MISSING}")
        else:
            am = await run_alertmanager(binary, n, hook, log, tmp)
        systems = {"kafka": await run_tocsin("kafka", n, hook, log, tmp),
                   "http": await run_tocsin("http", n, hook, log, tmp)}
    finally:
        await hook.stop()
    skipped = {} if am is not None else {"alertmanager_skipped": MISSING}

    def base(key: str) -> float | None:
        return None if am is None else am[key]

    out: dict[str, Result] = {}
    for way, t in systems.items():
        ingest = "Kafka" if way == "kafka" else "HTTP (its Alertmanager API v2, batches of 64)"
        out[f"alertmanager_{way}_alerts_per_cpu_s"] = vs(
            t["alerts_per_cpu_s"], base("alerts_per_cpu_s"), "alerts/CPU-s", n=n, tocsin=t, alertmanager=am,
            note=f"{n:,} distinct alerts, one webhook POST each: Tocsin worker alone ({ingest} ingest, SEV2 → "
                 "webhook only, recording on) vs Alertmanager 0.25 (API v2 in batches of 64, group_by ['...'])",
            **skipped)
        out[f"alertmanager_{way}_alerts_per_cpu_s_with_broker"] = vs(
            t["alerts_per_cpu_s_with_broker"], base("alerts_per_cpu_s"), "alerts/CPU-s", n=n,
            note="the same, the worker's and the embedded broker's CPU together", **skipped)
        out[f"alertmanager_{way}_alerts_per_s"] = vs(
            t["alerts_per_s"], base("alerts_per_s"), "alerts/s", n=n,
            note="first alert sent to last POST received", **skipped)
        out[f"alertmanager_{way}_cpu_s"] = vs(
            t["cpu_s"], base("cpu_s"), "CPU-s", n=n, broker_cpu_s=t["broker_cpu_s"],
            note="the worker's process vs Alertmanager's, first send to quiet; the broker's apart", **skipped)
        for q in ("p50", "p99"):
            out[f"alertmanager_{way}_latency_{q}"] = vs(
                t[f"{q}_ms"], base(f"{q}_ms"), "ms", n=n,
                note="each alert's send (its batch's POST, or its produce) to its POST's arrival", **skipped)
        out[f"alertmanager_{way}_delivered_once"] = vs(
            float(t["delivered_once"]), None if am is None else float(am["delivered_once"]), "1 = exactly once", n=n,
            tocsin={k: t[k] for k in ("posts", "delivered", "missing", "repeats")},
            alertmanager=None if am is None else {k: am[k] for k in ("posts", "delivered", "missing", "repeats")},
            note="1: every alert arrived in exactly one POST, n POSTs in all", **skipped)
    return out
