"""Recording on the real pipeline: decisions and attempts into the embedded ClickHouse (chdb)
held by the worker, queried through `tocsin sql` / `tocsin stats` while it runs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import aiohttp
import pytest

from tocsin.infra.broker import free_port

from ..support.faulty_store import faulty_env
from .harness import HttpReceiver, SmtpReceiver, Stack, WorkerProcess, produce, read_topic
from .test_pipeline import alert_bytes, bucket_time, delivery_env

pytestmark = pytest.mark.integration


def tocsin(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tocsin.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


async def sql_json(env: dict[str, str], *args: str) -> list[dict]:
    r = await asyncio.to_thread(tocsin, env, "sql", "--format", "json", *args)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


async def wait_count(env: dict[str, str], sql: str, want: int, timeout: float = 40.0) -> int:
    deadline = time.monotonic() + timeout
    got = -1
    while time.monotonic() < deadline:
        r = await asyncio.to_thread(tocsin, env, "sql", "--format", "json", sql)
        if r.returncode != 0:  # the worker may still be opening the store
            await asyncio.sleep(0.5)
            continue
        got = int(next(iter(json.loads(r.stdout.splitlines()[0]).values())))
        if got == want:
            return got
        await asyncio.sleep(0.5)
    return got


def recording_env(stack: Stack, webhook: HttpReceiver, smtp: SmtpReceiver, port: int) -> dict[str, str]:
    return {**stack.env, **delivery_env(webhook, smtp), "TOCSIN_RECORD_ENABLED": "true",
            "TOCSIN_RECORD_BATCH_S": "0.2", "TOCSIN_WEB_PORT": str(port),
            # SQL through the worker needs a token (SECURITY.md); the CLI sends it
            "TOCSIN_READ_TOKEN": "analyst-read-token"}


FLOW = [  # (type, severity, fingerprint, count)
    ("order_rejected", 1, "order_rejected:A1:BTC:s1", 4),
    ("position_limit_hit", 2, "position_limit_hit:A2:ETH:s2", 3),
    ("storage_threshold", 3, "storage_threshold:db1", 1),
]


async def run_flow(stack: Stack) -> None:
    items = []
    for type_, sev, fp, n in FLOW:
        for i in range(n):
            items.append(alert_bytes(type=type_, severity=sev, summary=f"{type_} {i}", fingerprint=fp,
                                     symbol=fp.split(":")[2] if fp.count(":") >= 3 else None,
                                     event_timestamp=bucket_time(i)))
    items.append(alert_bytes(type="component_recovered", severity=3, summary="redis back",
                             fingerprint="component_recovered:redis", event_timestamp=bucket_time(9)))
    await produce(stack.bootstrap, stack.topic("alerts"), items)


async def test_queries_on_live_recording_then_kill_replay_and_rebuild(
        stack: Stack, webhook: HttpReceiver, smtp: SmtpReceiver) -> None:
    webhook.script = lambda req, n: 500 if n == 1 else 200  # one failed attempt, then sent
    env = recording_env(stack, webhook, smtp, free_port())
    w = WorkerProcess(env, stack.tmp / "rec-worker.log").start()
    stack.workers.append(w)
    await w.wait_ready()
    await run_flow(stack)
    n_alerts = sum(n for *_, n in FLOW) + 1
    attempts = await read_topic(stack.bootstrap, stack.topic("attempts"), timeout=40,
                                until=lambda ms: sum(m["value"]["status"] == "sent" and m["value"]["channel"] == "webhook" for m in ms) >= 3)
    n_attempts = len(attempts)

    # every decision and attempt is in ClickHouse, read through the worker that holds chdb
    assert await wait_count(env, "SELECT count() FROM tocsin.alerts FINAL", n_alerts) == n_alerts
    assert await wait_count(env, "SELECT count() FROM tocsin.delivery_attempts FINAL", n_attempts) == n_attempts

    by_sev = {r["severity"]: r for r in await sql_json(env, "--query", "totals_24h_by_severity")}
    assert by_sev[1]["alerts"] == 4 and by_sev[2]["alerts"] == 3 and by_sev[3]["alerts"] == 2
    noisy = await sql_json(env, "--query", "noisiest_fingerprints")
    assert noisy[0]["fingerprint"] == "order_rejected:A1:BTC:s1" and noisy[0]["suppressed"] == 3
    by_type = {r["type"]: r for r in await sql_json(env, "--query", "totals_24h_by_type")}
    assert by_type["order_rejected"]["alerts"] == 4
    alert_id = next(a["value"]["alert_id"] for a in attempts if a["value"]["status"] == "failed")
    trail = await sql_json(env, "--query", "attempts_of_alert", "--param", f"alert_id={alert_id}")
    assert [t["status"] for t in trail if t["channel"] == "webhook"] == ["failed", "sent"]
    failing = await sql_json(env, "--query", "failing_destinations")
    assert any(f["destination"] == "webhook:default" and f["failed"] == 1 for f in failing)
    latency = {r["channel"] for r in await sql_json(env, "--query", "latency_by_channel")}
    assert {"webhook", "console"} <= latency
    stats = await asyncio.to_thread(tocsin, env, "stats")
    assert stats.returncode == 0, stats.stderr
    assert "order_rejected" in stats.stdout
    refused = await asyncio.to_thread(tocsin, env, "sql", "DROP TABLE tocsin.alerts")
    assert refused.returncode == 1 and "read-only" in refused.stderr

    # a recorder killed and restarted, and a replayed attempts topic: every count stays exact
    w.kill()
    msgs = await read_topic(stack.bootstrap, stack.topic("attempts"), min_count=n_attempts)
    await produce(stack.bootstrap, stack.topic("attempts"),
                  [(m["key"].encode(), json.dumps(m["value"]).encode()) for m in msgs])
    w2 = WorkerProcess(env, stack.tmp / "rec-worker2.log").start()
    stack.workers.append(w2)
    await w2.wait_ready()
    await asyncio.sleep(2.0)
    rows = await sql_json(env, "SELECT count() AS n, uniqExact(attempt_id) AS u FROM tocsin.delivery_attempts FINAL")
    assert rows[0]["n"] == rows[0]["u"] == n_attempts
    assert await wait_count(env, "SELECT count() FROM tocsin.alerts FINAL", n_alerts) == n_alerts
    w2.stop()

    # `tocsin rebuild` into an empty database reproduces the live counts
    fresh = {**env, "TOCSIN_DATA_DIR": str(stack.tmp / "fresh")}
    rb = await asyncio.to_thread(tocsin, fresh, "rebuild", "--yes")
    assert rb.returncode == 0, rb.stderr
    counts = json.loads(rb.stdout.strip().splitlines()[-1])
    assert counts["decisions"] == n_alerts
    rows = await sql_json(fresh, "SELECT (SELECT count() FROM tocsin.alerts FINAL) AS a, "
                                 "(SELECT count() FROM tocsin.delivery_attempts FINAL) AS d")
    assert rows[0]["a"] == n_alerts and rows[0]["d"] == n_attempts


async def test_clickhouse_failures_lose_nothing_and_delivery_goes_on(
        stack: Stack, webhook: HttpReceiver, smtp: SmtpReceiver) -> None:
    env = faulty_env(recording_env(stack, webhook, smtp, free_port()), faults=4)
    w = WorkerProcess(env, stack.tmp / "faulty.log").start()
    stack.workers.append(w)
    await w.wait_ready()
    await run_flow(stack)
    await webhook.wait_for(lambda r: len(r) >= 2)  # delivery does not wait for ClickHouse
    n_alerts = sum(n for *_, n in FLOW) + 1
    assert await wait_count(env, "SELECT count() FROM tocsin.alerts FINAL", n_alerts) == n_alerts
    log = w.log_tail(400)
    assert "retrying" in log and "no_such_table_injected_fault" in log


async def test_clickhouse_down_60_s_loses_nothing_and_delivery_goes_on(
        stack: Stack, webhook: HttpReceiver, smtp: SmtpReceiver) -> None:
    """ClickHouse refuses every insert for 60 s (issue #15's fault): alerts are delivered
    meanwhile, the worker stays healthy, and once it answers every decision and attempt is
    recorded exactly once."""
    outage = stack.tmp / "clickhouse-down"
    outage.touch()
    env = faulty_env(recording_env(stack, webhook, smtp, free_port()), outage=outage)
    w = WorkerProcess(env, stack.tmp / "outage.log").start()
    stack.workers.append(w)
    await w.wait_ready()
    started = time.monotonic()
    await run_flow(stack)
    await webhook.wait_for(lambda r: len(r) >= 2)  # delivery does not wait for ClickHouse
    attempts = await read_topic(stack.bootstrap, stack.topic("attempts"), timeout=40,
                                until=lambda ms: sum(m["value"]["channel"] == "webhook" for m in ms) >= 2)
    assert (await sql_json(env, "SELECT count() AS n FROM tocsin.alerts"))[0]["n"] == 0  # still down
    await asyncio.sleep(max(0.0, 60.0 - (time.monotonic() - started)))
    async with aiohttp.ClientSession() as s, s.get(w.url + "/health") as r:
        assert r.status == 200  # healthy through the outage
    outage.unlink()
    n_alerts = sum(n for *_, n in FLOW) + 1
    assert await wait_count(env, "SELECT count() FROM tocsin.alerts FINAL", n_alerts, timeout=60) == n_alerts
    rows = await sql_json(env, "SELECT count() AS n, uniqExact(alert_id) AS u FROM tocsin.alerts")
    assert rows[0]["n"] == rows[0]["u"] == n_alerts  # none twice, FINAL or not
    n_attempts = len(await read_topic(stack.bootstrap, stack.topic("attempts"), min_count=len(attempts)))
    assert await wait_count(env, "SELECT count() FROM tocsin.delivery_attempts", n_attempts) == n_attempts
    assert "no_such_table_injected_fault" in w.log_tail(2000)


async def test_unreachable_clickhouse_server_is_a_clear_retried_error(
        stack: Stack, webhook: HttpReceiver, smtp: SmtpReceiver) -> None:
    closed = free_port()
    env = {**recording_env(stack, webhook, smtp, free_port()),
           "TOCSIN_CLICKHOUSE_URL": f"http://tocsin:s3cr3tpass@127.0.0.1:{closed}/tocsin"}
    w = WorkerProcess(env, stack.tmp / "unreachable.log").start()
    stack.workers.append(w)
    await w.wait_ready()
    await run_flow(stack)
    await webhook.wait_for(lambda r: len(r) >= 2)
    await asyncio.sleep(2.0)
    assert w.proc is not None and w.proc.poll() is None  # still running
    log = w.log_tail(400)
    assert "recording waits for ClickHouse" in log and f"127.0.0.1:{closed}" in log
    assert "s3cr3tpass" not in log
