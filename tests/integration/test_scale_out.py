"""Two and three workers in one consumer group: partitions split, no notification lost or
doubled through a rebalance, a killed worker's partitions taken over with their state."""

from __future__ import annotations

import asyncio

import pytest

from .harness import HttpReceiver, Stack, produce, read_topic
from .test_pipeline import alert_bytes, bucket_time

pytestmark = pytest.mark.integration
FPS = 120


def round_of(stack: Stack, r: int) -> list[tuple[bytes, bytes]]:
    return [alert_bytes(type="position_limit_hit", severity=2, summary=f"round {r} fp {i}", fingerprint=f"so:{i}",
                        event_timestamp=bucket_time(r * 10)) for i in range(FPS)]


def per_fingerprint(webhook: HttpReceiver) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for req in webhook.requests:
        out.setdefault(req.body["alert"]["fingerprint"], set()).add(req.body["delivery_id"])
    return out


async def test_workers_split_partitions_and_take_over_state(stack: Stack, webhook: HttpReceiver) -> None:
    env = {"TOCSIN_WEBHOOK_DEFAULT_URL": webhook.url, "TOCSIN_PARTITIONS": "6"}
    w1 = await stack.start_worker(**env)
    w2 = await stack.start_worker(**env)
    await produce(stack.bootstrap, stack.topic("alerts"), round_of(stack, 1))
    await webhook.wait_for(lambda r: len(per_fingerprint(webhook)) == FPS, timeout=60)
    h1, h2 = await w1.wait_ready(), await w2.wait_ready()
    assert h1["assigned_partitions"] > 0 and h2["assigned_partitions"] > 0  # the partitions are split

    # a third worker joins while a second round (same bucket: all suppressed) flows
    w3 = stack.worker(**env).start()
    await produce(stack.bootstrap, stack.topic("alerts"), round_of(stack, 2))
    await w3.wait_ready()
    await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=2 * FPS, timeout=60)
    await asyncio.sleep(2.0)
    decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=2 * FPS, timeout=60)
    outcomes = [d["value"]["outcome"] for d in decisions]
    assert outcomes.count("notify") == FPS, "a fingerprint was notified twice in its bucket"
    # a graceful rebalance hands over what was processed: nothing is decided twice
    assert len(decisions) == 2 * FPS, f"{len(decisions) - 2 * FPS} alerts decided again through the rebalance"

    # a worker killed: its partitions and their throttle state move to the others
    w2.kill()
    await asyncio.sleep(8.0)  # the session timeout (6 s) passes, the group rebalances
    await produce(stack.bootstrap, stack.topic("alerts"), round_of(stack, 3))
    decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=3 * FPS, timeout=90)
    await asyncio.sleep(2.0)
    outcomes = [d["value"]["outcome"] for d in decisions]
    assert outcomes.count("notify") == FPS and outcomes.count("suppress") >= 2 * FPS
    ids = per_fingerprint(webhook)
    assert len(ids) == FPS and all(len(v) == 1 for v in ids.values())  # one delivery per fingerprint
    repeats = len(webhook.requests) - FPS
    print(f"\nwebhook POSTs: {len(webhook.requests)} for {FPS} fingerprints ({repeats} repeated)")
    assert repeats == 0
