"""Inhibition on a real worker (real broker, chdb recording, a webhook receiver): a source fires,
a target of its account is decided ``inhibited`` (recorded with the rule's name), another
account's is notified, the source recovers and the held target is notified then."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tocsin.schemas import create_alert, dumps
from tocsin.schemas.messages import LifecycleAction, LifecycleEvent

from .harness import HttpReceiver, Stack, produce, read_topic
from .test_pipeline import bucket_time

pytestmark = pytest.mark.integration
TOKEN = "inhibit-api-token"
RULE = "component down mutes its order rejections"
ROUTING = f"""
[severity]
1 = ["webhook:default"]
2 = ["webhook:default"]
3 = ["webhook:default"]

[[inhibit_rules]]
name = "{RULE}"
source_matchers = ['type="component_unhealthy"']
target_matchers = ['type="order_rejected"']
equal = ["account_id"]
"""


def event(type_: str, account: str, offset_s: float, **kw: Any) -> tuple[bytes, bytes]:
    ev = create_alert(type_, 2, f"{type_} {account}", account_id=account, event_timestamp=bucket_time(offset_s), **kw)
    return ev.fingerprint.encode(), dumps(ev)


async def sql_rows(session: aiohttp.ClientSession, base: str, text: str, want: int, timeout: float = 30) -> list[Any]:
    deadline, rows = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        async with session.post(f"{base}/api/sql", json={"sql": text}) as r:
            body = await r.json(content_type=None)
            rows = body["rows"] if r.status == 200 else []
        if len(rows) >= want:
            return rows  # type: ignore[no-any-return]
        await asyncio.sleep(0.5)
    raise AssertionError(f"{text}: wanted {want} rows, got {rows}")


def delivered(webhook: HttpReceiver, type_: str, account: str) -> list[dict[str, Any]]:
    return [x.body["alert"] for x in webhook.requests
            if x.body["alert"]["type"] == type_ and x.body["alert"]["entity"].get("account_id") == account]


@pytest.mark.timeout(120)
async def test_a_target_is_inhibited_while_its_source_fires_and_notified_when_it_resolves(
        stack: Stack, webhook: HttpReceiver, tmp_path: Path) -> None:
    routing = tmp_path / "routing.toml"
    routing.write_text(ROUTING)
    w = await stack.start_worker(TOCSIN_ROUTING_FILE=str(routing), TOCSIN_WEBHOOK_DEFAULT_URL=webhook.url,
                                 TOCSIN_API_TOKEN=TOKEN, TOCSIN_RECORD_ENABLED="true", TOCSIN_RECORD_BATCH_S="0.2")
    tag = uuid.uuid4().hex[:6]
    down, other = f"acc-{tag}-down", f"acc-{tag}-fine"
    alerts = stack.topic("alerts")

    # the source fires (and is notified: a source is an alert like any other)
    await produce(stack.bootstrap, alerts, [event("component_unhealthy", down, 0)])
    await webhook.wait_for(lambda r: bool(delivered(webhook, "component_unhealthy", down)))

    # its account's rejection is inhibited; another account's is notified
    held = event("order_rejected", down, 10)
    await produce(stack.bootstrap, alerts, [held, event("order_rejected", other, 10)])
    await webhook.wait_for(lambda r: bool(delivered(webhook, "order_rejected", other)))
    decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=3, timeout=30)
    by = {(d["value"]["alert"]["type"], d["value"]["alert"]["entity"]["account_id"]): d["value"] for d in decisions}
    assert (by[("order_rejected", down)]["outcome"], by[("order_rejected", down)]["reason"]) == ("inhibited", RULE)
    assert by[("order_rejected", down)]["destinations"] == []
    assert by[("order_rejected", other)]["outcome"] == "notify"
    facts = await read_topic(stack.bootstrap, stack.topic("inhibitions"), min_count=2, timeout=10)
    assert {(f["value"]["kind"], f["value"]["firing"]) for f in facts} == {("source", True), ("target", True)}
    await asyncio.sleep(1.5)  # the timer has looked: nothing is released while the source fires
    assert delivered(webhook, "order_rejected", down) == []

    # the source recovers: the held rejection is notified, at the recovery's time, naming the rule
    await produce(stack.bootstrap, alerts, [event("component_recovered", down, 20)])
    await webhook.wait_for(lambda r: bool(delivered(webhook, "order_rejected", down)), timeout=30)
    (released,) = delivered(webhook, "order_rejected", down)
    assert released["event_timestamp"].replace("Z", "+00:00").startswith(bucket_time(20).isoformat()[:19])
    assert released["details"]["inhibit_released"]["rule"] == RULE
    assert released["details"]["inhibit_released"]["inhibited_alert_id"] == by[("order_rejected", down)]["alert"]["alert_id"]
    await asyncio.sleep(2.5)  # released once: the timer does not send it again
    assert len(delivered(webhook, "order_rejected", down)) == 1

    # every decision recorded in ClickHouse with its reason
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
        rows = await sql_rows(session, w.url, "SELECT type, outcome, reason FROM tocsin.alerts FINAL "
                              f"WHERE account_id = '{down}' ORDER BY event_timestamp, type", 4)
    assert [tuple(r) for r in rows] == [
        ("component_unhealthy", "notify", "first in window"),
        ("order_rejected", "inhibited", RULE),
        ("component_recovered", "bypass", "recovery bypasses the throttle"),
        ("order_rejected", "notify", f"released: {RULE}"),
    ]


@pytest.mark.timeout(120)
async def test_an_on_call_resolve_of_the_source_ends_its_inhibition(
        stack: Stack, webhook: HttpReceiver, tmp_path: Path) -> None:
    """A source resolved only by an on-call (a ``resolve`` on P.lifecycle, as the API and CLI
    send it): the lifecycle agent makes its closing facts, the held target is released at the
    resolve's time and a later target of its account is notified."""
    routing = tmp_path / "routing.toml"
    routing.write_text(ROUTING)
    await stack.start_worker(TOCSIN_ROUTING_FILE=str(routing), TOCSIN_WEBHOOK_DEFAULT_URL=webhook.url)
    down = f"acc-{uuid.uuid4().hex[:6]}-oncall"
    alerts = stack.topic("alerts")
    await produce(stack.bootstrap, alerts, [event("component_unhealthy", down, 0)])
    await webhook.wait_for(lambda r: bool(delivered(webhook, "component_unhealthy", down)))
    await produce(stack.bootstrap, alerts, [event("order_rejected", down, 10)])
    facts = await read_topic(stack.bootstrap, stack.topic("inhibitions"), min_count=2, timeout=30)
    assert {(f["value"]["kind"], f["value"]["firing"]) for f in facts} >= {("source", True), ("target", True)}
    assert delivered(webhook, "order_rejected", down) == []

    source_fp = f"component_unhealthy:{down}::"
    resolve = LifecycleEvent(fingerprint=source_fp, action=LifecycleAction.RESOLVE, by="alice",
                             at=bucket_time(20))
    await produce(stack.bootstrap, stack.topic("lifecycle"), [(source_fp.encode(), dumps(resolve))])
    await webhook.wait_for(lambda r: bool(delivered(webhook, "order_rejected", down)), timeout=30)
    (released,) = delivered(webhook, "order_rejected", down)
    assert released["event_timestamp"].replace("Z", "+00:00").startswith(bucket_time(20).isoformat()[:19])
    assert released["details"]["inhibit_released"]["rule"] == RULE
    facts = await read_topic(stack.bootstrap, stack.topic("inhibitions"), min_count=4, timeout=30)
    assert {"source:" + source_fp, "target:" + source_fp} <= {f["value"]["kind"] + ":" + f["value"]["fingerprint"]
                                                             for f in facts if f["value"]["made_by"] == str(resolve.event_id)}
