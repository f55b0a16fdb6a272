"""Replay: the same decisions from a replayed alerts topic in a fresh group; a replayed
deliveries topic sends nothing again."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from .harness import HttpReceiver, Stack, produce, read_topic
from .test_pipeline import alert_bytes, bucket_time

pytestmark = pytest.mark.integration


def tocsin(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tocsin.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def key_of(d: dict) -> tuple:
    v = d["value"]
    return v["outcome"], v["dedupe_key"], v["suppressed_count"], v["window_start"]


async def test_replayed_alerts_decide_the_same_in_a_fresh_group(stack: Stack) -> None:
    items = []
    for i in range(40):  # 8 fingerprints, 5 events each, spread over two buckets
        items.append(alert_bytes(type="order_rejected", severity=2, summary=f"r{i}", account_id=f"A{i % 8}",
                                 event_timestamp=bucket_time(-300 + i * 15)))
    items.append(alert_bytes(type="component_recovered", severity=3, summary="back", fingerprint="component_recovered:x",
                             event_timestamp=bucket_time(1)))
    items.append((b"k", b"not json"))
    w = await stack.start_worker()
    await produce(stack.bootstrap, stack.topic("alerts"), items)
    original = await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=41)
    w.stop()

    fresh = "r" + stack.prefix
    dry = await asyncio.to_thread(tocsin, stack.env, "replay", "--topic", stack.topic("alerts"),
                                  "--to-topic", f"{fresh}.alerts", "--dry-run")
    assert dry.returncode == 0 and "would replay 42 messages" in dry.stdout, dry.stderr
    done = await asyncio.to_thread(tocsin, stack.env, "replay", "--topic", stack.topic("alerts"),
                                   "--to-topic", f"{fresh}.alerts")
    assert done.returncode == 0 and "replayed 42 messages" in done.stdout, done.stderr

    await stack.start_worker(TOCSIN_TOPIC_PREFIX=fresh)
    replayed = await read_topic(stack.bootstrap, f"{fresh}.decisions", min_count=41)
    before = {d["value"]["alert"]["alert_id"]: key_of(d) for d in original}
    after = {d["value"]["alert"]["alert_id"]: key_of(d) for d in replayed}
    assert after == before
    outcomes = [v[0] for v in before.values()]
    assert outcomes.count("notify") == 16 and outcomes.count("bypass") == 1  # 8 fingerprints x 2 buckets
    invalid = await read_topic(stack.bootstrap, f"{fresh}.alerts.invalid", min_count=1)
    assert invalid[0]["value"]["raw"] == "not json"


async def test_replayed_deliveries_send_nothing_again(stack: Stack, webhook: HttpReceiver) -> None:
    await stack.start_worker(TOCSIN_WEBHOOK_DEFAULT_URL=webhook.url)
    await produce(stack.bootstrap, stack.topic("alerts"), [
        alert_bytes(type="db_write_fail", severity=2, summary=f"d{i}", fingerprint=f"db:{i}",
                    event_timestamp=bucket_time(i)) for i in range(5)])
    await webhook.wait_for(lambda r: len(r) == 5)
    await asyncio.sleep(1.5)  # the delivery table's changelog is written
    r = await asyncio.to_thread(tocsin, stack.env, "replay", "--topic", stack.topic("deliveries.webhook"),
                                "--from", "0")
    assert r.returncode == 0 and "replayed 5 messages" in r.stdout, r.stderr
    attempts = await read_topic(stack.bootstrap, stack.topic("attempts"), timeout=30,
                                until=lambda ms: sum(m["value"]["status"] == "skipped_duplicate" for m in ms) >= 5)
    await asyncio.sleep(1.0)
    assert len(webhook.requests) == 5
    skipped = [a["value"] for a in attempts if a["value"]["status"] == "skipped_duplicate"]
    assert len(skipped) == 5 and {a["channel"] for a in skipped} == {"webhook"}
