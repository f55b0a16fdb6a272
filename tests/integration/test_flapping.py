"""Flap detection on a real worker and broker: a component that flaps (fake event times) gets one
``flapping`` notification at the webhook, its later changes recorded and not sent, and, once no
change came for ``hold_s`` (the timer held by the retry agent and sent back to the throttle),
one notification of the state it settled in. Recoveries carry their own fingerprint
(``component_recovered:...``) and are decided under the one they resolve."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tocsin.schemas import create_alert, dumps

from .harness import HttpReceiver, Stack, produce, read_topic
from .test_silences import TOKEN, until_rows

pytestmark = pytest.mark.integration

#: fake event times: an hour long past, whatever the clock says
T0 = dt.datetime(2025, 3, 1, 10, 0, tzinfo=dt.UTC)

ROUTING = """
[severity]
1 = ["webhook:default"]
2 = ["webhook:default"]
3 = ["webhook:default"]

[flapping]
changes = 2
window_s = 600
hold_s = 8
"""


def event(name: str, recovered: bool, at_s: float) -> tuple[bytes, bytes]:
    t = T0 + dt.timedelta(seconds=at_s)
    if recovered:
        ev = create_alert("component_recovered", 3, f"{name} up at {at_s:g}",
                          fingerprint=f"component_recovered:{name}", event_timestamp=t)
    else:
        ev = create_alert("component_unhealthy", 2, f"{name} down at {at_s:g}",
                          fingerprint=f"component_unhealthy:{name}", event_timestamp=t)
    return ev.fingerprint.encode(), dumps(ev)


@pytest.mark.timeout(120)
async def test_a_flapping_component_is_notified_once_then_settles(stack: Stack, webhook: HttpReceiver,
                                                                   tmp_path: Path) -> None:
    routing = tmp_path / "routing.toml"
    routing.write_text(ROUTING)
    w = await stack.start_worker(TOCSIN_WEBHOOK_DEFAULT_URL=webhook.url, TOCSIN_ROUTING_FILE=str(routing),
                                 TOCSIN_API_TOKEN=TOKEN, TOCSIN_RECORD_ENABLED="true",
                                 TOCSIN_RECORD_BATCH_S="0.2")
    name = f"redis-{uuid.uuid4().hex[:6]}"
    home = f"component_unhealthy:{name}"

    async def decided(*items: tuple[bytes, bytes]) -> None:
        """Produce ``items`` and wait for their decisions: a firing and its recovery travel
        under different keys (the recovery re-keyed to the fingerprint it resolves), so events
        produced together may be decided in either order."""
        await produce(stack.bootstrap, stack.topic("alerts"), list(items))
        want = {orjson.loads(v)["summary"] for _, v in items}
        await read_topic(stack.bootstrap, stack.topic("decisions"), timeout=30,
                         until=lambda d: want <= {x["value"]["alert"]["summary"] for x in d})

    # down, up (change 1), down (2): as before; up (3 > 2): flapping; down, up: quiet (in either order)
    for at, recovered in ((0, False), (1, True), (2, False), (3, True)):
        await decided(event(name, recovered, at))
    await decided(event(name, False, 4), event(name, True, 5))

    def summaries(r: list[Any]) -> list[str]:
        return [x.body["alert"]["summary"] for x in r if name in x.body["alert"]["summary"]]

    # the settled notification: no change since 5 s for hold_s (8 s), seen by the timer (no event came)
    await webhook.wait_for(lambda r: any(s.startswith("[settled") for s in summaries(r)), timeout=60)
    got = summaries(webhook.requests)
    assert got == [f"{name} down at 0", f"{name} up at 1", f"[flapping] {name} up at 3",
                   f"[settled resolved] {name} up at 5"], got
    settled = next(x.body for x in webhook.requests if x.body["alert"]["summary"].startswith("[settled"))
    assert settled["alert"]["event_timestamp"].startswith("2025-03-01T10:00:13")  # the hold's end
    assert settled["alert"]["type"] == "component_recovered"

    decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), timeout=30,
                                 until=lambda d: sum(name in x["value"]["alert"]["summary"] for x in d) >= 7)
    by = {x["value"]["alert"]["summary"]: x["value"] for x in decisions if name in x["value"]["alert"]["summary"]}
    assert by[f"{name} down at 0"]["outcome"] == "notify"
    assert by[f"{name} up at 1"]["outcome"] == "bypass"
    assert by[f"{name} down at 2"]["outcome"] == "suppress"  # the throttle: the same window
    crossing = by[f"{name} up at 3"]
    assert crossing["outcome"] == "flapping" and crossing["destinations"] == ["webhook:default"]
    assert crossing["reason"].startswith("flapping: 3 state changes within 600s (more than 2)")
    for quiet in (f"{name} down at 4", f"{name} up at 5"):  # (one of them late, when it came second)
        assert by[quiet]["outcome"] == "flapping" and by[quiet]["destinations"] == [], by[quiet]
        assert by[quiet]["dedupe_key"] == crossing["dedupe_key"] == f"{home}:flapping:{int(T0.timestamp() + 3) * 1000}"
    end = by[f"[settled resolved] {name} up at 5"]
    assert end["outcome"] == "bypass" and end["reason"].startswith("flapping settled resolved")
    assert end["suppressed_count"] == 2

    # the timer went through the retry topic, keyed by its deterministic id
    timers = await read_topic(stack.bootstrap, stack.topic("deliveries.retry"), min_count=1, timeout=10)
    assert [t["key"] for t in timers if t["value"].get("key") == home]

    # recorded in ClickHouse with their reasons
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
        where = f"FROM tocsin.alerts FINAL WHERE position(summary, '{name}') > 0"
        await until_rows(session, w.url, f"SELECT 1 {where} LIMIT 7", 7)  # all 7 decisions recorded
        rows = await until_rows(session, w.url, f"SELECT outcome, count() {where} GROUP BY outcome", 4)
        assert {r[0]: int(r[1]) for r in rows} == {"bypass": 2, "flapping": 3, "notify": 1, "suppress": 1}
        # the dashboard's stats carry the decisions per outcome (the last 24 hours: none of these)
        async with session.get(f"{w.url}/api/alerts/stats") as r:
            stats = await r.json()
        assert isinstance(stats["by_outcome"], dict), stats


@pytest.mark.timeout(180)
async def test_a_restart_keeps_the_episode_and_its_timer(stack: Stack, webhook: HttpReceiver, tmp_path: Path) -> None:
    """The worker stops while the fingerprint flaps, its hold not over: the next worker restores
    the flapping table from its changelog, keeps the episode (a change it decides is quiet) and
    the retry agent's timer of the last change, scheduled before the stop and read again from the
    retry topic (the event after the restart is no change, so it schedules none), settles it once."""
    routing = tmp_path / "routing.toml"
    routing.write_text(ROUTING.replace("hold_s = 8", "hold_s = 20"))
    env = {"TOCSIN_WEBHOOK_DEFAULT_URL": webhook.url, "TOCSIN_ROUTING_FILE": str(routing)}
    w = await stack.start_worker(**env)
    name = f"db-{uuid.uuid4().hex[:6]}"

    async def decided(*items: tuple[bytes, bytes]) -> None:
        await produce(stack.bootstrap, stack.topic("alerts"), list(items))
        want = {orjson.loads(v)["summary"] for _, v in items}
        await read_topic(stack.bootstrap, stack.topic("decisions"), timeout=30,
                         until=lambda d: want <= {x["value"]["alert"]["summary"] for x in d})

    for at, recovered in ((0, False), (1, True), (2, False), (3, True)):
        await decided(event(name, recovered, at))
    w.stop(timeout=30)
    await stack.start_worker(**env)
    await decided(event(name, True, 4))  # still flapping, no change: quiet, and no new timer

    await webhook.wait_for(lambda r: any(x.body["alert"]["summary"].startswith("[settled") for x in r), timeout=90)
    got = [x.body["alert"]["summary"] for x in webhook.requests if name in x.body["alert"]["summary"]]
    assert got == [f"{name} down at 0", f"{name} up at 1", f"[flapping] {name} up at 3",
                   f"[settled resolved] {name} up at 4"], got
    decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), timeout=30,
                                 until=lambda d: any("[settled" in x["value"]["alert"]["summary"] for x in d))
    quiet = [x["value"] for x in decisions if x["value"]["alert"]["summary"] == f"{name} up at 4"]
    assert quiet and all(q["outcome"] == "flapping" and q["destinations"] == [] for q in quiet)
