"""API contract tests against a running worker (real broker, real recording on chdb)."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .harness import HttpReceiver, Stack, WorkerProcess, produce, read_topic
from .test_pipeline import alert_bytes, bucket_time

pytestmark = pytest.mark.integration
TOKEN = "s3cret-token"


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as r:
        return r.status, await r.json(content_type=None)


async def until(session: aiohttp.ClientSession, url: str, pred: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        status, body = await get(session, url)
        if status == 200 and pred(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{url}: condition not met, last {status} {body}")
        await asyncio.sleep(0.3)


ALERTS = [
    dict(type="kill_switch_activated", severity=1, summary="kill switch A1", fingerprint="ks:A1", account_id="A1"),
    dict(type="order_rejected", severity=1, summary="rejected BTC", symbol="BTC", strategy_id="s1", account_id="A1"),
    dict(type="position_limit_hit", severity=2, summary="limit ETH", symbol="ETH", strategy_id="s2", account_id="A2"),
    dict(type="db_write_fail", severity=2, summary="orders db", fingerprint="db:orders"),
    dict(type="storage_threshold", severity=3, summary="disk 91%", fingerprint="disk:db1"),
    dict(type="component_unhealthy", severity=2, summary="redis down", fingerprint="component_unhealthy:redis"),
]


@pytest.fixture
async def api_worker(stack: Stack, webhook: HttpReceiver) -> WorkerProcess:
    return await stack.start_worker(TOCSIN_API_TOKEN=TOKEN, TOCSIN_RECORD_ENABLED="true",
                                    TOCSIN_RECORD_BATCH_S="0.2", TOCSIN_WEBHOOK_DEFAULT_URL=webhook.url)


async def test_api_contract(stack: Stack, api_worker: WorkerProcess) -> None:
    items = [alert_bytes(event_timestamp=bucket_time(i), **a) for i, a in enumerate(ALERTS)]
    items.append(alert_bytes(event_timestamp=bucket_time(10), **ALERTS[0]))  # suppressed repeat
    await produce(stack.bootstrap, stack.topic("alerts"), items)
    base = api_worker.url
    async with aiohttp.ClientSession() as anon:
        status, _ = await get(anon, f"{base}/api/alerts")
        assert status == 401  # a worker with a token answers reads only with it
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s:
        # the repeat's status update may land after the six first sightings: wait for it too
        body = await until(s, f"{base}/api/alerts", lambda b: b["total"] == len(ALERTS) and any(
            i["fingerprint"] == "ks:A1" and i["occurrences"] == 2 for i in b["items"]))
        assert [i["last_seen"] for i in body["items"]] == sorted((i["last_seen"] for i in body["items"]), reverse=True)
        ks = next(i for i in body["items"] if i["fingerprint"] == "ks:A1")
        assert ks["occurrences"] == 2 and ks["suppressed_count"] == 1 and ks["status"] == "active"

        # each filter
        async def total(q: str) -> int:
            status, b = await get(s, f"{base}/api/alerts?{q}")
            assert status == 200, b
            return b["total"]
        assert await total("severity=1") == 2
        assert await total("severity=SEV2") == 3
        assert await total("type=db_write_fail") == 1
        assert await total("symbol=ETH") == 1
        assert await total("strategy_id=s1") == 1
        assert await total("status=active") == 6
        since = bucket_time(3).isoformat()
        assert await total(f"since={quote(since)}") == 4  # last_seen >= +3 s (ks:A1 was seen again at +10 s)
        assert await total(f"until={quote(since)}") == 2
        # paging
        _, p1 = await get(s, f"{base}/api/alerts?limit=4")
        _, p2 = await get(s, f"{base}/api/alerts?limit=4&offset=4")
        assert len(p1["items"]) == 4 and len(p2["items"]) == 2 and p1["total"] == p2["total"] == 6
        assert not {i["fingerprint"] for i in p1["items"]} & {i["fingerprint"] for i in p2["items"]}
        # bad filters
        for q in ("severity=7", "status=open", "since=yesterday", "limit=0", "offset=-1"):
            status, b = await get(s, f"{base}/api/alerts?{q}")
            assert status == 400 and b["error"], q

        # writes need the token
        url = f"{base}/api/alerts/{quote('db:orders')}/acknowledge"
        async with aiohttp.ClientSession() as nobody, nobody.post(url, json={"by": "ann"}) as r:
            assert r.status == 401
        async with s.post(url, json={"by": "ann"}, headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401
        async with s.post(url, json={"by": "ann", "note": "on it"},
                          headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 202
            assert (await r.json())["action"] == "acknowledge"
        body = await until(s, f"{base}/api/alerts?status=acknowledged", lambda b: b["total"] == 1)
        assert body["items"][0]["fingerprint"] == "db:orders" and body["items"][0]["acknowledged_by"] == "ann"

        # a recovery resolves the problem it names
        await produce(stack.bootstrap, stack.topic("alerts"), [alert_bytes(
            type="component_recovered", severity=3, summary="redis back", fingerprint="component_recovered:redis",
            event_timestamp=bucket_time(20))])
        body = await until(s, f"{base}/api/alerts?status=resolved",
                           lambda b: "component_unhealthy:redis" in {i["fingerprint"] for i in b["items"]})

        # stats and deliveries from ClickHouse
        # recording is asynchronous: the attempts may be recorded after the alerts
        stats = await until(s, f"{base}/api/alerts/stats",
                            lambda b: b["total_24h"] == 8 and b["delivery_success_rate"] is not None)
        assert stats["by_severity"]["1"] == 3 and stats["by_type"]["kill_switch_activated"] == 2
        assert stats["delivery_success_rate"] == 1.0
        alert_id = ks["notified_alert_id"]  # the first, notified; the latest was suppressed
        dels = await until(s, f"{base}/api/alerts/{alert_id}/deliveries",
                           lambda b: {"webhook", "console"} <= {i["channel"] for i in b["items"]})
        assert all(i["status"] == "sent" for i in dels["items"])
        status, _ = await get(s, f"{base}/api/alerts/not-a-uuid/deliveries")
        assert status == 400


async def test_writes_refused_without_a_configured_token(stack: Stack) -> None:
    w = await stack.start_worker()
    async with aiohttp.ClientSession() as s, s.post(f"{w.url}/api/alerts/x:1/resolve") as r:
        assert r.status == 403 and "TOCSIN_API_TOKEN" in (await r.json())["error"]


async def test_metrics_parse_and_move(stack: Stack, webhook: HttpReceiver) -> None:
    w = await stack.start_worker(TOCSIN_WEBHOOK_DEFAULT_URL=webhook.url)

    async def sample() -> dict[tuple[str, tuple], float]:
        async with aiohttp.ClientSession() as s, s.get(f"{w.url}/metrics") as r:
            assert r.status == 200
            text = await r.text()
        out = {}
        for fam in text_string_to_metric_families(text):
            for smp in fam.samples:
                out[(smp.name, tuple(sorted(smp.labels.items())))] = smp.value
        return out

    before = await sample()
    await produce(stack.bootstrap, stack.topic("alerts"), [
        alert_bytes(type="db_write_fail", severity=2, summary="x", fingerprint="m:1", event_timestamp=bucket_time(1)),
        alert_bytes(type="db_write_fail", severity=2, summary="x", fingerprint="m:1", event_timestamp=bucket_time(2)),
        (b"bad", b"{nope"),
    ])
    await webhook.wait_for(lambda r: len(r) == 1)
    await asyncio.sleep(1.0)
    after = await sample()

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("tocsin_events_in_total") == 3
    assert delta("tocsin_events_invalid_total") == 1
    assert delta("tocsin_decisions_total", outcome="notify") == 1
    assert delta("tocsin_decisions_total", outcome="suppress") == 1
    assert delta("tocsin_deliveries_total", channel="webhook", status="sent") == 1
    assert delta("tocsin_delivery_latency_seconds_count", channel="webhook") == 1


async def test_a_burst_folds_every_occurrence_with_one_status_record_per_batch(stack: Stack,
                                                                               webhook: HttpReceiver) -> None:
    """The lifecycle agent folds a batch per fingerprint and writes each status once: the
    counts are exact and the status changelog holds far fewer records than decisions."""
    w = await stack.start_worker(TOCSIN_WEBHOOK_DEFAULT_URL=webhook.url)
    burst = [alert_bytes(type="db_write_fail", severity=2, summary=f"write failed {i}", fingerprint=f"burst:{i % 3}",
                         event_timestamp=bucket_time(1 + i * 0.01)) for i in range(300)]
    await produce(stack.bootstrap, stack.topic("alerts"), burst)
    async with aiohttp.ClientSession() as s:
        body = await until(s, f"{w.url}/api/alerts?limit=10",
                           lambda b: sum(i["occurrences"] for i in b["items"]) == 300)
    by_fp = {i["fingerprint"]: i for i in body["items"]}
    assert {fp: (i["occurrences"], i["suppressed_count"]) for fp, i in by_fp.items()} == {
        f"burst:{k}": (100, 99) for k in range(3)}
    changelog = await read_topic(stack.bootstrap, f"{stack.prefix}-worker-status-changelog", min_count=3, settle=1.0)
    assert 3 <= len(changelog) < 300 / 2, f"{len(changelog)} status records for 300 decisions"
