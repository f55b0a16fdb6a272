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


async def test_rebalances_mid_delivery_neither_lose_nor_repeat_a_notification(stack: Stack,
                                                                              webhook: HttpReceiver) -> None:
    """Commands queued and in flight when a worker joins, and when one leaves: the queued ones
    are read again by their partitions' next owner, the ones being sent are finished and
    committed first, and the delivery table tells the next owner what was sent."""
    async def slow(req: object, n: int) -> int:  # noqa: ARG001 - the script's shape
        await asyncio.sleep(0.2)
        return 200

    webhook.script = slow
    n = 300  # two workers, two sends each at a time, 0.2 s a send: about 15 s of delivering
    env = {"TOCSIN_WEBHOOK_DEFAULT_URL": webhook.url, "TOCSIN_PARTITIONS": "6", "TOCSIN_DELIVERY_CONCURRENCY": "2"}
    w1 = await stack.start_worker(**env)
    await stack.start_worker(**env)
    await produce(stack.bootstrap, stack.topic("alerts"), [
        alert_bytes(type="position_limit_hit", severity=2, summary=f"mid {i}", fingerprint=f"mid:{i}",
                    event_timestamp=bucket_time(1)) for i in range(n)])
    await webhook.wait_for(lambda r: len(r) >= 20, timeout=60)
    before_join = len(webhook.requests)
    w3 = stack.worker(**env).start()  # joins mid-delivery
    await w3.wait_ready()
    joined_at = len(webhook.requests)
    await webhook.wait_for(lambda r: len(r) >= joined_at + 20, timeout=60)
    left_at = len(webhook.requests)
    await asyncio.to_thread(w1.stop)  # leaves mid-delivery (the webhook keeps answering meanwhile)
    await webhook.wait_for(lambda r: len(per_fingerprint(webhook)) == n, timeout=120)
    await asyncio.sleep(2.0)
    ids = per_fingerprint(webhook)
    print(f"\n{len(webhook.requests)} POSTs for {n} fingerprints; a worker joined after {before_join}"
          f" and one left after {left_at}")
    assert joined_at < n and left_at < n, "the deliveries were over before the rebalances"
    assert len(ids) == n and all(len(v) == 1 for v in ids.values())
    assert len(webhook.requests) == n  # none repeated
