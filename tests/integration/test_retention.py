"""Bounded state on the real broker: closed statuses past the retention leave the status
table (every worker's, so every worker's API) with a tombstone on the changelog that a
restarted worker honours; delivery states past theirs likewise."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import aiohttp
import pytest

from tocsin.agents.batches import partition_for_text
from tocsin.schemas import LifecycleAction, LifecycleEvent, dumps

from .harness import HttpReceiver, Stack, produce, read_topic
from .test_api import until
from .test_delivery import webhook_command
from .test_pipeline import alert_bytes

pytestmark = pytest.mark.integration
HOUR = dt.timedelta(hours=1)


def lifecycle(fp: str, action: LifecycleAction, at: dt.datetime) -> tuple[bytes, bytes]:
    return fp.encode(), dumps(LifecycleEvent(fingerprint=fp, action=action, by="ann", at=at))


async def listed(session: aiohttp.ClientSession, url: str) -> set[str]:
    async with session.get(f"{url}/api/alerts?limit=500") as r:
        assert r.status == 200
        return {i["fingerprint"] for i in (await r.json())["items"]}


async def test_closed_statuses_past_the_retention_leave_every_worker_and_stay_gone(stack: Stack) -> None:
    now = dt.datetime.now(dt.UTC)
    old = now - 3 * HOUR
    env = {"TOCSIN_STATUS_RETENTION_S": "60"}  # a sweep every 3 s
    a = await stack.start_worker(**env)
    b = await stack.start_worker(**env)
    kept = {"old:active", "old:acked", "recent:resolved"}
    gone = {"old:resolved", "old:dismissed", "old:self-resolved"}
    await produce(stack.bootstrap, stack.topic("alerts"), [
        alert_bytes(type="db_write_fail", severity=2, summary=fp, fingerprint=fp, event_timestamp=old)
        for fp in ("old:active", "old:acked", "old:resolved", "old:dismissed")
    ] + [
        alert_bytes(type="db_write_fail", severity=2, summary="back", fingerprint="old:self-resolved",
                    event_timestamp=old, action="resolve"),  # a recovery is itself resolved
        alert_bytes(type="db_write_fail", severity=2, summary="recent", fingerprint="recent:resolved",
                    event_timestamp=now - dt.timedelta(seconds=20)),
    ])
    await produce(stack.bootstrap, stack.topic("lifecycle"), [
        lifecycle("old:acked", LifecycleAction.ACKNOWLEDGE, old + dt.timedelta(minutes=1)),
        lifecycle("old:resolved", LifecycleAction.RESOLVE, old + dt.timedelta(minutes=1)),
        lifecycle("old:dismissed", LifecycleAction.DISMISS, old + dt.timedelta(minutes=1)),
        lifecycle("recent:resolved", LifecycleAction.RESOLVE, now - dt.timedelta(seconds=10)),
    ])
    changelog = f"{stack.prefix}-worker-status-changelog"

    def tombstoned(records: list[dict[str, Any]]) -> set[str]:
        return {r["key"].strip('"') for r in records if r["value"] is None}

    records = await read_topic(stack.bootstrap, changelog, timeout=60, until=lambda rs: tombstoned(rs) >= gone)
    assert tombstoned(records) == gone
    # each key's records, its tombstone too, in the partition of the decisions and on-call
    # actions that wrote it: the producers' partitioner over the fingerprint
    for r in records:
        assert r["partition"] == partition_for_text(r["key"].strip('"'), 4), r
    decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=6)
    assert {(d["key"], d["partition"]) for d in decisions} == {
        (fp, partition_for_text(fp, 4)) for fp in kept | gone}
    async with aiohttp.ClientSession() as s:
        for w in (a, b):  # every worker, whichever wrote the partition
            await until(s, f"{w.url}/api/alerts?limit=500",
                        lambda body: {i["fingerprint"] for i in body["items"]} == kept)
    a.stop()
    b.stop()

    # a restart with a retention that would keep them: the tombstones, not a sweep, keep them out
    c = await stack.start_worker(TOCSIN_STATUS_RETENTION_S=str(30 * 86400))
    async with aiohttp.ClientSession() as s:
        body = await until(s, f"{c.url}/api/alerts?limit=500", lambda body: body["total"] >= len(kept))
        assert {i["fingerprint"] for i in body["items"]} == kept
        await asyncio.sleep(2)
        assert await listed(s, c.url) == kept
        statuses = {i["fingerprint"]: i["status"] for i in body["items"]}
    assert statuses == {"old:active": "active", "old:acked": "acknowledged", "recent:resolved": "resolved"}


async def test_delivery_states_expire_and_a_restart_does_not_bring_them_back(stack: Stack,
                                                                            webhook: HttpReceiver) -> None:
    w = await stack.start_worker(TOCSIN_WEBHOOK_DEFAULT_URL=webhook.url, TOCSIN_DELIVERY_STATE_RETENTION_S="3")
    now = dt.datetime.now(dt.UTC)
    key, command = webhook_command(1, 2, now)
    did = key.decode()
    topic = stack.topic("deliveries.webhook")
    changelog = f"{stack.prefix}-worker-deliveries-changelog"
    await produce(stack.bootstrap, topic, [(key, command)])
    await webhook.wait_for(lambda r: len(r) == 1)
    await produce(stack.bootstrap, topic, [(key, command)])  # a re-read copy, within the retention
    attempts = await read_topic(stack.bootstrap, stack.topic("attempts"), min_count=2)
    assert [a["value"]["status"] for a in attempts] == ["sent", "skipped_duplicate"]
    # its state says when it was written (rounded up to the second: a twentieth of a retention
    # under 20 minutes), and goes with a tombstone
    t0 = time.time()
    records = await read_topic(stack.bootstrap, changelog, timeout=60,
                               until=lambda rs: any(r["value"] is None for r in rs))
    assert [r["key"] for r in records] == [f'"{did}"', f'"{did}"']
    state, written = records[0]["value"]
    assert state == "sent" and 0 <= written - now.timestamp() <= 5
    assert records[1]["value"] is None and records[1]["partition"] == records[0]["partition"]
    assert time.time() - t0 < 30  # the retention, its rounding up and a sweep
    w.stop()

    # a worker started again, with a retention that would keep it, has no state for it: the
    # same command is delivered once more, and remembered from then on
    w2 = await stack.start_worker(TOCSIN_WEBHOOK_DEFAULT_URL=webhook.url, TOCSIN_DELIVERY_STATE_RETENTION_S="86400")
    await produce(stack.bootstrap, topic, [(key, command)])
    await webhook.wait_for(lambda r: len(r) == 2)
    await produce(stack.bootstrap, topic, [(key, command)])
    attempts = await read_topic(stack.bootstrap, stack.topic("attempts"), min_count=4)
    assert [a["value"]["status"] for a in attempts] == ["sent", "skipped_duplicate", "sent", "skipped_duplicate"]
    assert len(webhook.requests) == 2
    w2.stop()


async def test_delivery_states_a_rocksdb_store_held_before_a_start_expire_too(stack: Stack,
                                                                            webhook: HttpReceiver) -> None:
    """A RocksDB store's recovery reads only the changelog past what it persisted: the states
    on disk are found by a scan of each partition, and expire like the others."""
    rocks = {"TOCSIN_WEBHOOK_DEFAULT_URL": webhook.url, "TOCSIN_TABLE_STORE": "rocksdb"}
    # kept while this worker runs; written time rounded up to 2 s (a twentieth of 40)
    w = await stack.start_worker(**rocks, TOCSIN_DELIVERY_STATE_RETENTION_S="40")
    key, command = webhook_command(2, 2, dt.datetime.now(dt.UTC))
    await produce(stack.bootstrap, stack.topic("deliveries.webhook"), [(key, command)])
    await webhook.wait_for(lambda r: len(r) == 1)
    changelog = f"{stack.prefix}-worker-deliveries-changelog"
    await read_topic(stack.bootstrap, changelog, min_count=1)
    await asyncio.sleep(1.5)  # past a commit: the store has it on disk with its offset
    w.stop()
    w2 = await stack.start_worker(**rocks, TOCSIN_DELIVERY_STATE_RETENTION_S="2")
    records = await read_topic(stack.bootstrap, changelog, timeout=30,
                               until=lambda rs: any(r["value"] is None for r in rs))
    assert [r["value"] is None for r in records] == [False, True]
    assert "deliveries: 1 states found on disk" in w2.log_path.read_text()
    await produce(stack.bootstrap, stack.topic("deliveries.webhook"), [(key, command)])
    await webhook.wait_for(lambda r: len(r) == 2)  # forgotten on disk too: delivered again
    w2.stop()
