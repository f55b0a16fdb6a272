"""The benchmark scenarios. Each returns ``{"value", "baseline", "ratio", "unit", ...}`` with
the baseline measured in the same run on the same broker; ratio = value / baseline."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from statistics import median
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ..infra.broker import EmbeddedBroker, free_port
from ..schemas import DeliveryCommand, create_alert, delivery_id_for, dumps
from .peers import HttpReceiver, WorkerProcess, base_env

Result = dict[str, Any]
Log = Callable[[str], None]


def result(value: float, baseline: float, unit: str, **extra: Any) -> Result:
    return {"value": round(value, 3), "baseline": round(baseline, 3),
            "ratio": round(value / baseline, 3) if baseline else None, "unit": unit, **extra}


def bucket_ts(offset: float = 0.0) -> dt.datetime:
    now = time.time()
    return dt.datetime.fromtimestamp(now // 600 * 600 + 1 + offset, dt.UTC)


def alerts(n: int, fingerprints: int, severity: int = 3) -> list[tuple[bytes, bytes]]:
    ts = bucket_ts()
    out = []
    for i in range(n):
        ev = create_alert("order_rejected", severity, f"bench {i}", fingerprint=f"bench:{i % fingerprints}",
                          event_timestamp=ts, details={"i": i})
        out.append((ev.fingerprint.encode(), dumps(ev)))
    return out


async def produce(bootstrap: str, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=10, max_batch_size=1 << 20)
    await p.start()
    try:
        futs = [await p.send(topic, v, key=k) for k, v in items]
        await asyncio.gather(*futs)
    finally:
        await p.stop()


async def span(bootstrap: str, topic: str, n: int, timeout: float, worker: WorkerProcess | None = None) -> float:
    """Seconds between the first and the n-th message's producer timestamps on ``topic``
    (fails at once if ``worker``, the process producing them, exits)."""
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                         enable_auto_commit=False, group_id=None)
    await c.start()
    stamps: list[int] = []
    deadline = time.monotonic() + timeout
    try:
        while len(stamps) < n and time.monotonic() < deadline:
            if worker is not None and worker.proc is not None and worker.proc.poll() is not None:
                raise RuntimeError(f"the measured process exited; see {worker.log_path}")
            batch = await c.getmany(timeout_ms=500, max_records=20000)
            for msgs in batch.values():
                stamps.extend(m.timestamp for m in msgs)
    finally:
        await c.stop()
    if len(stamps) < n:
        raise TimeoutError(f"{topic}: {len(stamps)} of {n} messages within {timeout:.0f}s")
    stamps.sort()
    return max((stamps[n - 1] - stamps[0]) / 1000.0, 1e-3)


async def count_reaches(bootstrap: str, topic: str, n: int, timeout: float, worker: WorkerProcess | None = None) -> None:
    """Wait until ``topic`` holds ``n`` messages (its true end offsets, summed)."""
    from ..infra.kafka import end_offsets, topic_partitions

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await c.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            if worker is not None and worker.proc is not None and worker.proc.poll() is not None:
                raise RuntimeError(f"the measured process exited; see {worker.log_path}")
            tps = await topic_partitions(c, topic)
            if tps and sum((await end_offsets(c, tps)).values()) >= n:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: fewer than {n} messages within {timeout:.0f}s")
            await asyncio.sleep(0.3)
    finally:
        await c.stop()


async def feed_in_steps(bootstrap: str, prefix: str, items: list[tuple[bytes, bytes]], worker: WorkerProcess,
                        step: int = 5000, before: int = 0) -> None:
    """Produce ``items`` (each a new fingerprint) ``step`` at a time, each step once the
    previous one's notifications are all delivered: the worker's steady state, not a backlog.
    ``before``: how many attempts the topic already holds."""
    for i in range(0, len(items), step):
        chunk = items[i:i + step]
        await produce(bootstrap, f"{prefix}.alerts", chunk)
        await count_reaches(bootstrap, f"{prefix}.attempts", before + i + len(chunk), timeout=600, worker=worker)


async def raw_loop(bootstrap: str, src: str, dst: str, n: int) -> None:
    """Baseline (b): a bare aiokafka consume → produce loop."""
    c = AIOKafkaConsumer(src, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=f"raw-{uuid.uuid4().hex[:6]}")
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await c.start()
    await p.start()
    done = 0
    try:
        while done < n:
            batch = await c.getmany(timeout_ms=500, max_records=5000)
            for msgs in batch.values():
                for m in msgs:
                    await p.send(dst, m.value, key=m.key)
                    done += 1
        await p.flush()
    finally:
        await c.stop()
        await p.stop()


async def tocsin_rate(bootstrap: str, prefix: str, items: list[tuple[bytes, bytes]], tmp: Path,
                      **extra: Any) -> tuple[float, float | None]:
    """Alerts a second one worker decides ``items`` at (produced before it starts), with the
    settings ``extra`` (base_env); and the worker's CPU time per alert meanwhile (µs, all its
    threads: less disturbed than the rate by what else the machine runs)."""
    await produce(bootstrap, f"{prefix}.alerts", items)
    w = WorkerProcess(base_env(bootstrap, prefix, tmp / prefix, **extra), tmp / f"{prefix}.log",
                      loglevel="warning").start()
    try:
        await w.wait_ready()
        cpu0 = cpu_seconds(w.pid)
        rate = len(items) / await span(bootstrap, f"{prefix}.decisions", len(items), timeout=600, worker=w)
        cpu1 = cpu_seconds(w.pid)
        cpu = None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / len(items) * 1e6
        return rate, cpu
    finally:
        w.stop()


async def pipeline(n: int, log: Log, tmp: Path, store_rounds: int = 0,
                   table_store: str | None = None) -> dict[str, Result]:
    """Tocsin's pipeline against a Faust pass-through and a bare aiokafka loop, each on its own
    copy of ``n`` alerts; ``table_store``: the worker's TOCSIN_TABLE_STORE (None: its default);
    ``store_rounds``: that many more runs of each table store, memory and RocksDB alternated,
    for the RocksDB store's cost (the median of each)."""
    items = alerts(n, fingerprints=max(1, n // 20))
    store_env: dict[str, Any] = {"TOCSIN_TABLE_STORE": table_store} if table_store else {}
    with EmbeddedBroker(f"127.0.0.1:{free_port()}", log_path=tmp / "broker-pipeline.log") as b:
        out: dict[str, float] = {}
        # Tocsin: validation, throttle, routing
        out["tocsin"], tocsin_cpu = await tocsin_rate(b.bootstrap, "p1", items, tmp, **store_env)
        log(f"pipeline: tocsin {out['tocsin']:.0f}/s"
            + (f", worker CPU {tocsin_cpu:.1f} µs/alert" if tocsin_cpu is not None else ""))
        stores: dict[str, list[float]] = {"memory": [], "rocksdb": []}
        cpus: dict[str, list[float]] = {"memory": [], "rocksdb": []}
        for r in range(store_rounds if _has_rocksdict() else 0):
            for store, runs in stores.items():
                rate, cpu = await tocsin_rate(b.bootstrap, f"s{r}{store}", items, tmp, TOCSIN_TABLE_STORE=store)
                runs.append(rate)
                if cpu is not None:
                    cpus[store].append(cpu)
                log(f"pipeline: tocsin, {store} store, round {r + 1}: {rate:.0f}/s"
                    + (f", worker CPU {cpu:.0f} µs/alert" if cpu is not None else ""))
        # (a) a Faust agent that only consumes and produces
        await produce(b.bootstrap, "p2.alerts", items)
        pt = WorkerProcess(base_env(b.bootstrap, "p2", tmp / "p2"), tmp / "p2.log",
                           command=("tocsin.bench.passthrough",)).start()
        out["faust"] = n / await span(b.bootstrap, "p2.passthrough", n, timeout=600, worker=pt)
        pt.stop()
        log(f"pipeline: faust pass-through {out['faust']:.0f}/s")
        # (b) raw aiokafka consume -> produce
        await produce(b.bootstrap, "p3.alerts", items)
        cpu0 = cpu_seconds(os.getpid())  # the loop runs alone in this process meanwhile
        await raw_loop(b.bootstrap, "p3.alerts", "p3.out", n)
        cpu1 = cpu_seconds(os.getpid())
        raw_cpu = None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / n * 1e6
        out["raw"] = n / await span(b.bootstrap, "p3.out", n, timeout=120)
        log(f"pipeline: raw aiokafka {out['raw']:.0f}/s"
            + (f", CPU {raw_cpu:.1f} µs/message" if raw_cpu is not None else ""))
    results = {
        "pipeline_vs_faust_passthrough": result(out["tocsin"], out["faust"], "alerts/s", n=n),
        "pipeline_vs_raw_aiokafka": result(out["tocsin"], out["raw"], "alerts/s", n=n),
    }
    if tocsin_cpu is not None and raw_cpu is not None:
        # what bounds the rate's ratio: the worker's CPU for an alert against the loop's for a
        # message (the loop is not CPU-bound: it waits on the broker too)
        results["pipeline_cpu_vs_raw_aiokafka"] = result(tocsin_cpu, raw_cpu, "CPU µs/alert", n=n)
    if stores["rocksdb"]:
        results["pipeline_rocksdb_vs_memory_store"] = result(
            median(stores["rocksdb"]), median(stores["memory"]), "alerts/s", n=n,
            runs={k: [round(v) for v in vs] for k, vs in stores.items()})
    if cpus["rocksdb"] and cpus["memory"]:
        results["pipeline_rocksdb_vs_memory_store_cpu"] = result(
            median(cpus["rocksdb"]), median(cpus["memory"]), "worker CPU µs/alert", n=n,
            runs={k: [round(v, 1) for v in vs] for k, vs in cpus.items()})
    return results


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


async def offered(rate: int, seconds: float, send: Callable[[int], Awaitable[None]]) -> None:
    """Call ``send(i)`` at ``rate`` per second for ``seconds``, in 10 ms ticks."""
    total = int(rate * seconds)
    t0 = time.monotonic()
    i = 0
    while i < total:
        due = int((time.monotonic() - t0) * rate) + 1
        while i < min(due, total):
            await send(i)
            i += 1
        await asyncio.sleep(0.01)


#: The latency runs' routing files. "webhook": the alerts (SEV2) go to the webhook only, as
#: DESIGN's routing matrix has it, so the run measures one alert's way to its one receiver.
#: "default": the shipped routing file (tocsin/routing.default.toml), whose ``always`` also
#: sends every notified alert to the console, which is always on: two deliveries an alert.
LATENCY_ROUTING = {
    "webhook": 'always = []\n[severity]\n1 = ["webhook:default"]\n2 = ["webhook:default"]\n3 = []\n',
    "default": None,
}


async def latency(runs: list[tuple[int, str]], seconds: float, log: Log, tmp: Path) -> dict[str, Result]:
    """Produce -> webhook received at each ``(rate, routing)`` of ``runs`` (``LATENCY_ROUTING``),
    each against a bare consume -> POST loop at the same load."""
    # the bench's own producer and receiver stamp the times: what earlier scenarios left in
    # this process is moved out of the collector's reach, so its pauses are not measured
    gc.collect()
    gc.freeze()
    results: dict[str, Result] = {}
    with EmbeddedBroker(f"127.0.0.1:{free_port()}", log_path=tmp / "broker-latency.log") as b:
        recv = await HttpReceiver(keep=False).start()
        for rate, routing in runs:
            prefix = f"l{rate}{routing[0]}"
            env = base_env(b.bootstrap, prefix, tmp / prefix, TOCSIN_WEBHOOK_DEFAULT_URL=recv.url)
            text = LATENCY_ROUTING[routing]
            if text is not None:
                route = tmp / f"routing-{routing}.toml"
                route.write_text(text, encoding="utf-8")
                env["TOCSIN_ROUTING_FILE"] = str(route)
            w = WorkerProcess(env, tmp / f"{prefix}.log", loglevel="warning").start()
            await w.wait_ready()
            p = AIOKafkaProducer(bootstrap_servers=b.bootstrap, linger_ms=0)
            await p.start()
            sent: dict[str, float] = {}
            ts = bucket_ts()
            run = uuid.uuid4().hex[:6]

            async def send(i: int, p: AIOKafkaProducer = p, sent: dict[str, float] = sent, prefix: str = prefix,
                           ts: dt.datetime = ts, run: str = run) -> None:
                ev = create_alert("db_write_fail", 2, f"lat {i}", fingerprint=f"lat:{run}:{uuid.uuid4().hex}",
                              event_timestamp=ts)
                key = f"{ev.fingerprint}:{int(ts.timestamp()) // 600}"
                sent[delivery_id_for(key, "webhook:default", "webhook:default")] = time.time()
                await p.send(f"{prefix}.alerts", dumps(ev), key=ev.fingerprint.encode())

            # warm-up (connections, metadata, first batches), not measured
            await offered(rate, 1.0, send)
            await p.flush()
            deadline = time.monotonic() + 60
            while sum(1 for k in sent if k in recv.arrivals) < len(sent) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            sent.clear()
            broker_cpu: list[float] = []  # the broker's CPU, each second of the run
            sampler = asyncio.ensure_future(sample_cpu(b.proc.pid if b.proc else None, broker_cpu))
            await offered(rate, seconds, send)
            sampler.cancel()
            await p.flush()
            deadline = time.monotonic() + 60
            while sum(1 for k in sent if k in recv.arrivals) < len(sent) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await p.stop()
            w.stop()
            lat = [(recv.arrivals[k] - t) * 1000 for k, t in sent.items() if k in recv.arrivals]
            # baseline: a bare consume -> POST loop at the same load
            base = await bare_latency(b.bootstrap, f"{prefix}b", recv, rate, seconds)
            suffix = "" if routing == "webhook" else f"_{routing}_routing"
            for q, name in ((0.5, "p50"), (0.99, "p99")):
                results[f"latency_{rate}_per_s{suffix}_{name}"] = result(
                    pct(lat, q), pct(base, q), "ms", delivered=len(lat), offered=len(sent), routing=routing,
                    broker_cpu_pct_per_s=broker_cpu)
            log(f"latency @{rate}/s ({routing} routing): p50 {pct(lat, .5):.1f} ms, p99 {pct(lat, .99):.1f} ms "
                f"(bare loop p50 {pct(base, .5):.1f}, p99 {pct(base, .99):.1f}); {len(lat)}/{len(sent)} delivered; "
                f"broker CPU each second: {', '.join(f'{c:.0f}' for c in broker_cpu)} %")
        await recv.stop()
    return results


def cpu_seconds(pid: int | None) -> float | None:
    """The CPU time (user + system) a process has used, from /proc; None where there is none
    (no process, or it is gone)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def sample_cpu(pid: int | None, out: list[float]) -> None:
    """Append a process's CPU use (% of one core) each second until cancelled. The embedded
    broker's grows during a latency run: its fetches cost more as a partition fills (memory
    storage; BENCHMARKS.md)."""
    if pid is None:
        return
    last, t_last = cpu_seconds(pid), time.monotonic()
    while last is not None:
        await asyncio.sleep(1.0)
        now, t_now = cpu_seconds(pid), time.monotonic()
        if now is None:
            return
        out.append(round(100 * (now - last) / (t_now - t_last), 1))
        last, t_last = now, t_now


async def bare_latency(bootstrap: str, topic: str, recv: HttpReceiver, rate: int, seconds: float) -> list[float]:
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None,
                         fetch_max_wait_ms=20)
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await c.start()
    await p.start()
    sent: dict[str, float] = {}
    stop = asyncio.Event()

    async def loop() -> None:
        async with aiohttp.ClientSession() as s:
            while not stop.is_set():
                batch = await c.getmany(timeout_ms=50)
                for msgs in batch.values():
                    await asyncio.gather(*(s.post(recv.url, data=m.value, headers={"X-Bench-Marker": m.key.decode()})
                                           for m in msgs))

    task = asyncio.ensure_future(loop())
    await asyncio.sleep(0.5)

    async def send(i: int) -> None:
        marker = f"bare:{topic}:{uuid.uuid4().hex}"
        sent[marker] = time.time()
        await p.send(topic, b"{}", key=marker.encode())

    await offered(rate, 1.0, send)  # warm-up, as for Tocsin
    deadline = time.monotonic() + 30
    while sum(1 for k in sent if k in recv.arrivals) < len(sent) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    sent.clear()
    await offered(rate, seconds, send)
    deadline = time.monotonic() + 30
    while sum(1 for k in sent if k in recv.arrivals) < len(sent) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 5)
    await c.stop()
    await p.stop()
    return [(recv.arrivals[k] - t) * 1000 for k, t in sent.items() if k in recv.arrivals]


async def delivery(n: int, log: Log, tmp: Path) -> dict[str, Result]:
    with EmbeddedBroker(f"127.0.0.1:{free_port()}", log_path=tmp / "broker-delivery.log") as b:
        recv = await HttpReceiver(keep=False).start()
        ts = bucket_ts()
        items = []
        for i in range(n):
            a = create_alert("db_write_fail", 2, f"d{i}", fingerprint=f"d:{i}", event_timestamp=ts)
            did = delivery_id_for(f"{a.fingerprint}:0", "webhook:default", "webhook:default")
            cmd = DeliveryCommand(delivery_id=did, alert=a, dedupe_key=f"{a.fingerprint}:0",
                                  receiver="webhook:default", destination="webhook:default")
            items.append((did.encode(), dumps(cmd)))
        await produce(b.bootstrap, "d.deliveries.webhook", items)
        env = base_env(b.bootstrap, "d", tmp / "d", TOCSIN_WEBHOOK_DEFAULT_URL=recv.url)
        w = WorkerProcess(env, tmp / "d.log", loglevel="warning").start()
        await w.wait_ready()
        deadline = time.monotonic() + 600
        while recv.count < n and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        arrivals = sorted(recv.arrivals.values())
        rate = (len(arrivals) - 1) / max(arrivals[-1] - arrivals[0], 1e-3)
        w.stop()
        log(f"delivery: tocsin {rate:.0f}/s")
        # baseline: a bare aiohttp client loop, 64 concurrent, same server
        recv.count = 0
        sem = asyncio.Semaphore(64)
        t0 = time.perf_counter()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as s:
            async def one(body: bytes) -> None:
                async with sem, s.post(recv.url, data=body) as r:
                    await r.read()
            await asyncio.gather(*(one(v) for _, v in items))
        base = n / (time.perf_counter() - t0)
        log(f"delivery: bare client loop {base:.0f}/s")
        await recv.stop()
    return {"delivery_webhook": result(rate, base, "deliveries/s", n=n)}


def recording(n: int, log: Log, tmp: Path, rounds: int = 5) -> dict[str, Result]:
    """Decisions into ClickHouse (chdb) through the Recorder as the record agent drives it
    (``Pipeline``), from the bytes it reads, against a raw clickhouse-connect insert of the same rows, already built. Both
    write 10,000 rows an insert, after the same warm-up (a first insert pays for setting up
    the table's parts and views), in ``rounds`` alternating rounds of ``n`` new rows each
    (the engine's background merges weigh on whichever runs next); the medians are kept.
    Both run at the worker's switch interval (``SWITCH_INTERVAL_S``), as the agent does."""
    import statistics

    from ..agents.recorder import SWITCH_INTERVAL_S, Pipeline, Recorder
    from ..infra.clickhouse.store import open_store
    from ..schemas.messages import Decision, Outcome

    ts = bucket_ts()

    def decisions(k: int) -> list[bytes]:  # the values as the record agent reads them: bytes
        out = []
        for i in range(k):
            a = create_alert("order_rejected", 2, f"r{i}", fingerprint=f"r:{i % 500}", event_timestamp=ts)
            d = Decision(decision_id=uuid.uuid4(), alert=a, dedupe_key=f"{a.fingerprint}:0",
                         outcome=Outcome.SUPPRESS, reason="bench", window_start=ts, suppressed_count=i)
            out.append(dumps(d))
        return out

    store = open_store(f"chdb://{tmp / 'ch'}")
    store.migrate()
    rec = Recorder(store, batch_rows=10_000)

    def built(values: list[bytes]) -> list[dict[str, Any]]:  # decoded and built, ids renewed
        return [rec.rows_for("decisions", {**orjson.loads(v), "decision_id": str(uuid.uuid4())})[1] for v in values]

    async def inserted(rejects: list[Any], _: Any) -> None:
        assert not rejects

    async def record(values: list[bytes]) -> None:  # as the record agent does: one loop, a
        pipeline = Pipeline(rec, inserted)  # batch checked while the one before is inserted
        for i in range(0, len(values), 10_000):
            await pipeline.put([("decisions", v) for v in values[i:i + 10_000]])
        await pipeline.drain()

    switch = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        warm = decisions(2_000)
        asyncio.run(record(warm))
        store.insert("alerts", built(warm))
        agent_rates, raw_rates = [], []
        for _ in range(rounds):
            messages = decisions(n)
            store.truncate("alerts")
            gc.collect()  # the bench's own objects (the models it made the messages from) are
            gc.freeze()  # not the agent's: out of the collector's walks, as the worker freezes its own
            t0 = time.perf_counter()
            asyncio.run(record(messages))
            agent_rates.append(n / (time.perf_counter() - t0))
            rows = built(messages)  # baseline: the same rows, already built, a raw insert
            store.truncate("alerts")
            gc.collect()
            gc.freeze()
            t0 = time.perf_counter()
            for i in range(0, n, 10_000):
                store.insert("alerts", rows[i:i + 10_000])
            raw_rates.append(n / (time.perf_counter() - t0))
        assert rec.rows_inserted == rounds * n + len(warm) and not rec.rejects and rec.json_refused == 0
    finally:
        sys.setswitchinterval(switch)
    store.close()
    agent_rate, raw_rate = statistics.median(agent_rates), statistics.median(raw_rates)
    log(f"recording: recorder {agent_rate:.0f} rows/s, raw insert {raw_rate:.0f} rows/s (medians of {rounds} "
        f"rounds: {', '.join(f'{a:.0f}/{r:.0f}' for a, r in zip(agent_rates, raw_rates, strict=True))})")
    return {"recording_rows": result(agent_rate, raw_rate, "rows/s", n=n, rounds=rounds)}


def table_memory(n: int, log: Log) -> dict[str, Result]:
    import subprocess
    import sys

    def run(mode: str) -> float:
        out = subprocess.run([sys.executable, "-m", "tocsin.bench.memtable", str(n), mode],
                             capture_output=True, text=True, check=True)
        return float(out.stdout.strip())

    table, plain = run("table"), run("plain")
    log(f"memory: throttle table {table:.0f} MB per 1M fingerprints (plain dict of them {plain:.0f} MB)")
    return {"memory_throttle_table_per_million": result(
        table, plain, "MB", keys=n, note="the table's data as Faust's memory store holds it; "
        "baseline = the fingerprints alone in a plain dict")}


async def worker_memory(keys: int, log: Log, tmp: Path, first: int = 5000,
                        rocksdb_keys: int | None = None) -> dict[str, Result]:
    """Whole-worker RSS growth per notified fingerprint, memory and RocksDB stores: the slope
    after a first step of ``first`` fingerprints (which raises the allocator's high-water
    mark once, about 100 MB here, memory the worker reuses but does not give back). The
    RocksDB store is fed ``rocksdb_keys`` (default ``keys``; 0: not measured). A slope over a few tens of
    thousands overstates the million's: the tables' dicts double their size in steps, and the
    bounded caches (the partition of a fingerprint, routes) fill in the first tens of
    thousands; the full run feeds the memory store a million (BENCHMARKS.md)."""
    out: dict[str, Result] = {}
    per: dict[str, float] = {}
    for store in ("memory", "rocksdb"):
        if store == "rocksdb" and (not _has_rocksdict() or rocksdb_keys == 0):
            break
        if store == "rocksdb" and rocksdb_keys is not None:
            keys = rocksdb_keys
        with EmbeddedBroker(f"127.0.0.1:{free_port()}", log_path=tmp / f"broker-mem-{store}.log") as b:
            prefix = f"m{store[0]}"
            env = base_env(b.bootstrap, prefix, tmp / prefix, TOCSIN_TABLE_STORE=store)
            w = WorkerProcess(env, tmp / f"{prefix}.log", loglevel="warning").start()
            await w.wait_ready()
            await asyncio.sleep(2)
            idle = w.rss_mb()
            items = alerts(keys, fingerprints=keys)
            await feed_in_steps(b.bootstrap, prefix, items[:first], w)
            await asyncio.sleep(1)
            after_first = w.rss_mb()
            await feed_in_steps(b.bootstrap, prefix, items[first:], w, before=first)
            await asyncio.sleep(3)
            per[store] = (w.rss_mb() - after_first) / (keys - first) * 1_000_000
            w.stop()
        log(f"memory: {store} store worker grows {per[store]:.0f} MB per 1M notified fingerprints "
            f"(idle {idle:.0f} MB, {after_first:.0f} MB after the first {first:,})")
        if store == "memory":
            out["memory_worker_per_million_fingerprints"] = result(
                per[store], after_first, "MB", keys=keys, idle_mb=round(idle, 1),
                note=f"whole worker RSS growth after the first {first:,} fingerprints, new ones fed 5,000 at a "
                     "time, each step once its notifications are delivered (every table and buffer), "
                     "extrapolated; baseline = RSS after the first step")
        else:
            out["memory_worker_per_million_fingerprints_rocksdb"] = result(
                per[store], per["memory"], "MB", keys=keys,
                note="the same with the RocksDB store vs the memory store")
    return out


async def worker_memory_retained(keys: int, log: Log, tmp: Path, first: int = 5000,
                                 retention_s: int = 3) -> dict[str, Result]:
    """Whole-worker RSS growth per notified fingerprint once its state is past its retention:
    fed as ``worker_memory`` feeds, each alert a recovery of itself three hours ago (notified,
    its status resolved at its event time), the status and delivery-state retentions
    ``retention_s``: the sweeps delete a step's statuses and delivery states before the next
    step (and Faust's 30 s cleanup the throttle's past windows), so the worker should stay
    flat: memory freed and used again, not grown."""
    with EmbeddedBroker(f"127.0.0.1:{free_port()}", log_path=tmp / "broker-mem-retained.log") as b:
        prefix = "mr"
        env = base_env(b.bootstrap, prefix, tmp / prefix, TOCSIN_TABLE_STORE="memory", TOCSIN_STATUS_RETENTION_S=retention_s,
                       TOCSIN_DELIVERY_STATE_RETENTION_S=retention_s)
        w = WorkerProcess(env, tmp / f"{prefix}.log", loglevel="warning").start()
        await w.wait_ready()
        ts = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
        items = []
        for i in range(keys):
            ev = create_alert("component_unhealthy", 3, f"bench {i}", fingerprint=f"bench:{i}", event_timestamp=ts,
                              action="resolve")
            items.append((ev.fingerprint.encode(), dumps(ev)))
        step = 5000
        rss: list[float] = []
        for i in range(0, keys, step):
            await feed_in_steps(b.bootstrap, prefix, items[i:i + step], w, step=step, before=i)
            await asyncio.sleep(retention_s + 3)  # past the retention and a sweep
            rss.append(w.rss_mb())
        await asyncio.sleep(31)  # Faust's cleanup of the throttle's past windows
        rss.append(w.rss_mb())
        async with aiohttp.ClientSession() as session, session.get(
                f"http://127.0.0.1:{w.port}/api/alerts?limit=1") as r:
            left = (await r.json())["total"]
        w.stop()
    base = rss[0]
    per = (rss[-1] - base) / (keys - first) * 1_000_000
    log(f"memory: past a {retention_s} s retention the worker grows {per:.0f} MB per 1M notified fingerprints "
        f"(RSS after each step of {step:,}: {', '.join(f'{x:.0f}' for x in rss)} MB; {left} statuses left)")
    return {"memory_worker_per_million_fingerprints_past_retention": result(
        per, base, "MB", keys=keys, statuses_left=left, rss_mb=[round(x, 1) for x in rss],
        note=f"whole worker RSS growth after the first {first:,} fingerprints when each is resolved and past "
             f"a {retention_s} s status and delivery-state retention before the next step (the sweeps' "
             "tombstones), extrapolated; baseline = RSS after the first step")}


def _has_rocksdict() -> bool:
    try:
        import rocksdict  # noqa: F401
    except ImportError:
        return False
    return True


def throttle_records(keys: int, partitions: int = 4,
                     at: dt.datetime | None = None) -> Iterator[tuple[int, bytes, bytes]]:
    """(partition, key, value) of ``keys`` fingerprints' throttle state for the window of event
    time ``at`` (default: the current bucket), as the throttle writes them (core/tables.py,
    agents/throttle.py): the changelog's records, and what a RocksDB store holds."""
    from faust.windows import TumblingWindow

    from ..agents.batches import partition_for
    from ..decisions.throttle import WindowState

    window = orjson.dumps(TumblingWindow(600).current((at or bucket_ts()).timestamp()))[1:-1]
    for i in range(keys):
        fp = f"order_rejected:ACC{i:07d}:BTC-USD:strat-{i % 50}"
        key = b'["' + fp.encode() + b'",[' + window + b"]]"
        value = orjson.dumps(WindowState(i & 0xFFFFFFFFFF, i % 7).to_value())
        yield partition_for(fp.encode(), partitions), key, value


def write_throttle_store(data_dir: Path, keys: int, partitions: int = 4, at: dt.datetime | None = None) -> None:
    """The RocksDB store a worker with ``TOCSIN_DATA_DIR=data_dir`` holds once it has read the
    changelog ``write_throttle_changelog(..., keys, partitions, at)`` wrote into a new topic
    (each partition's records at offsets 0, 1, ...): every key and value as Faust's store puts
    a changelog record, and each partition's offset, written straight to disk (Faust's own
    RocksDB options) instead of by a first start that replays the whole changelog."""
    from faust.stores.rocksdb import RocksDBOptions

    from ..core.store_check import OFFSET_KEY, table_dir

    tables = table_dir(data_dir / "faust")  # the first worker's (core/store_check.py)
    tables.mkdir(parents=True, exist_ok=True)
    dbs = {n: RocksDBOptions(use_rocksdict=True).open(tables / f"throttle-{n}.db") for n in range(partitions)}
    counts = dict.fromkeys(dbs, 0)
    try:
        for part, key, value in throttle_records(keys, partitions, at):
            dbs[part].put(key, value)
            counts[part] += 1
        for n, db in dbs.items():
            if counts[n]:
                db.put(OFFSET_KEY, str(counts[n] - 1).encode())
            db.flush()
    finally:
        for db in dbs.values():
            db.close()


async def write_throttle_changelog(bootstrap: str, prefix: str, keys: int, partitions: int = 4,
                                   at: dt.datetime | None = None) -> None:
    """``keys`` fingerprints' throttle state for the window of event time ``at`` (default: the
    current bucket), written to the throttle table's changelog as the throttle writes it
    (core/tables.py, agents/throttle.py), one record batch per partition."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"{prefix}-worker-throttle-changelog"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        await admin.close()
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024)
    await p.start()
    try:
        pending = []
        batches: dict[int, Any] = {}
        for part, key, value in throttle_records(keys, partitions, at):
            batch = batches.get(part) or p.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                pending.append(await p.send_batch(batch, topic, partition=part))
                batch = p.create_batch()
                batch.append(key=key, value=value, timestamp=None)
            batches[part] = batch
        for part, batch in batches.items():
            pending.append(await p.send_batch(batch, topic, partition=part))
        await asyncio.gather(*pending)
    finally:
        await p.stop()


async def recovery(keys: int, log: Log, tmp: Path, *, first_start: bool = False,
                   memory: bool = True) -> dict[str, Result]:
    """Restart to ready with ``keys`` fingerprints in the throttle table: the memory store
    replays the changelog, the RocksDB store finds them on disk and reads only the tail. The
    RocksDB store is written straight to disk as a first start leaves it (``write_throttle_store``);
    ``first_start``: made by a first start instead, which replays the whole changelog (timed too).
    ``memory``: time the memory store's replay (else the RocksDB restart is compared with an
    empty start only)."""
    out: dict[str, Result] = {}
    with EmbeddedBroker(f"127.0.0.1:{free_port()}", log_path=tmp / "broker-recovery.log") as b:
        empty = WorkerProcess(base_env(b.bootstrap, "e", tmp / "e"), tmp / "e.log", loglevel="warning").start()
        await empty.wait_ready(600)
        t_empty = empty.ready_s
        empty.stop()
        t0 = time.monotonic()
        await write_throttle_changelog(b.bootstrap, "r", keys)
        log(f"recovery: {keys} keys written to the changelog in {time.monotonic() - t0:.1f} s")
        t_mem = None
        if memory:
            env = base_env(b.bootstrap, "r", tmp / "r", TOCSIN_TABLE_STORE="memory")
            w = WorkerProcess(env, tmp / "r.log", loglevel="warning").start()
            await w.wait_ready(3600)
            t_mem = w.ready_s
            w.stop()
            log(f"recovery: memory store ready in {t_mem:.1f} s with {keys} keys (empty start {t_empty:.1f} s)")
            out["recovery_ready_s"] = result(t_mem, t_empty, "s", keys=keys,
                                             note="start with the keys in the changelog (memory store: replayed) "
                                                  "vs a start with an empty changelog")
        if not _has_rocksdict():
            out["recovery_rocksdb_vs_memory_s"] = {
                "value": None, "baseline": None, "ratio": None, "unit": "s",
                "note": "rocksdict not installed (pip install rocksdict)"}
            return out
        env_k = base_env(b.bootstrap, "r", tmp / "rk", TOCSIN_TABLE_STORE="rocksdb")
        extra: dict[str, Any] = {}
        if first_start:
            first = WorkerProcess(env_k, tmp / "rk1.log", loglevel="warning").start()
            await first.wait_ready(3600)  # fills RocksDB from the changelog once
            extra["rocksdb_first_start_s"] = round(first.ready_s, 2)
            await asyncio.sleep(2)
            first.stop()
        else:
            t0 = time.monotonic()
            await asyncio.to_thread(write_throttle_store, tmp / "rk" / "data", keys)
            log(f"recovery: {keys} keys written to a RocksDB store in {time.monotonic() - t0:.1f} s")
        again = WorkerProcess(env_k, tmp / "rk2.log", loglevel="warning").start()
        await again.wait_ready(900)
        t_rocks = again.ready_s
        again.stop()
        if "removing" in again.log_path.read_text():
            raise RuntimeError(f"the RocksDB store was taken for stale; see {again.log_path}")
        log(f"recovery: RocksDB store restart ready in {t_rocks:.1f} s with {keys} keys ("
            + (f"its first start {extra['rocksdb_first_start_s']:.1f} s, " if first_start else "")
            + (f"memory store {t_mem:.1f} s, " if t_mem is not None else "") + f"empty start {t_empty:.1f} s)")
        if t_mem is not None:
            out["recovery_rocksdb_vs_memory_s"] = result(
                t_rocks, t_mem, "s", keys=keys, empty_start_s=round(t_empty, 2), **extra,
                note="restart to ready: RocksDB store (state on disk) vs memory store (changelog replay)")
        else:
            out["recovery_rocksdb_vs_empty_s"] = result(
                t_rocks, t_empty, "s", keys=keys, **extra,
                note="restart to ready: RocksDB store (state on disk) vs a start with an empty changelog")
    return out


async def run_all(quick: bool, log: Log, only: set[str] | None = None, *, keys: int | None = None,
                  recovery_memory: bool = True, soak_minutes: float = 30.0,
                  soak_rate: int = 100, latency_seconds: float | None = None,
                  store_rounds: int = 0, table_store: str | None = None) -> dict[str, Result]:
    """Every scenario (``only``: these), smaller with ``quick``. ``keys``: the recovery's throttle
    keys (default 100,000 quick, a million full); ``recovery_memory``: time the memory store's
    replay too; ``store_rounds``: the pipeline's runs of each table store, alternated;
    ``table_store``: the pipeline worker's TOCSIN_TABLE_STORE. The soak runs only when named in
    ``only`` (``soak_minutes`` at ``soak_rate`` alerts a second). ``latency_seconds``: each
    latency run's measured seconds (5 quick, 60 full: the issue's minute at 1,000 alerts a
    second)."""
    tmp = Path(tempfile.mkdtemp(prefix="tocsin-bench-"))
    n = 20_000 if quick else 100_000
    results: dict[str, Result] = {}

    def want(name: str) -> bool:
        return only is None or name in only

    if want("pipeline"):
        results.update(await pipeline(50_000 if quick else n, log, tmp, store_rounds, table_store))
    if want("latency"):
        results.update(await latency([(100, "webhook"), (1000, "webhook"), (1000, "default")],
                                     latency_seconds or (5.0 if quick else 60.0), log, tmp))
    if want("delivery"):
        results.update(await delivery(5_000 if quick else 20_000, log, tmp))
    if want("recording"):
        results.update(await asyncio.to_thread(recording, 50_000 if quick else 200_000, log, tmp))
    if want("memory"):
        results.update(await asyncio.to_thread(table_memory, 1_000_000, log))
        # --quick: the memory store's slope only (the RocksDB store's, diagnostic, in the full run)
        results.update(await worker_memory(30_000 if quick else 1_005_000, log, tmp,
                                           rocksdb_keys=0 if quick else 100_000))
        results.update(await worker_memory_retained(20_000 if quick else 100_000, log, tmp))
    if want("recovery"):
        results.update(await recovery(keys or (100_000 if quick else 1_000_000), log, tmp,
                                      first_start=not quick and recovery_memory, memory=recovery_memory))
    if want("api_alerts"):
        from .statuses import api_alerts

        results.update(await api_alerts(1_000_000, log, rounds=3 if quick else 7, quick=quick))
    if want("alertmanager"):
        from .alertmanager import side_by_side

        results.update(await side_by_side(5_000 if quick else 20_000, log, tmp))
    if only is not None and "soak" in only:
        from .soak import soak

        results.update(await soak(soak_minutes, soak_rate, log, tmp))
    log(f"work files in {tmp}")
    return results
