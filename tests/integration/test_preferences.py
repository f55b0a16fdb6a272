"""Recipients' preferences on a real worker and broker: the routing file's (quiet hours at the
event's time, an opt-out per severity, a SEV1 and a recovery through quiet hours), a person's
changed through the API from the moment it answers (a team's refused, another destination
refused, no token refused) and reset, each change that moved a route in the decision's reason."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

import aiohttp
import pytest

from tocsin.schemas import create_alert, dumps

from .harness import HttpReceiver, Stack, produce, read_topic

pytestmark = pytest.mark.integration
TOKEN = "preferences-api-token"

ROUTING = """
always = []
[severity]
1 = ["webhook:alice", "webhook:ops"]
2 = ["webhook:alice", "webhook:ops"]
3 = ["webhook:alice", "webhook:ops"]

[destinations."webhook:alice"]
url_env = "ALICE_URL"
[destinations."webhook:ops"]
url_env = "OPS_URL"

[recipients.alice]
destinations = ["webhook:alice"]
time_zone = "UTC"
quiet_hours = { start = "22:00", end = "07:00" }
opt_out = [{ severities = [3] }]

[recipients.ops]
kind = "team"
destinations = ["webhook:ops"]
"""

DAY = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def alert(fp: str, when: dt.datetime, severity: int = 2, action: str = "trigger") -> tuple[bytes, bytes]:
    ev = create_alert("disk_full", severity, f"disk {fp} {action}", account_id="a", fingerprint=fp, action=action,
                      event_timestamp=when)
    return ev.fingerprint.encode(), dumps(ev)


def got(receiver: HttpReceiver, fp: str) -> list[str]:
    return [r.body["alert"]["action"] for r in receiver.requests if r.body["alert"]["fingerprint"] == fp]


async def api(s: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> tuple[int, Any]:
    async with s.request(method, url, json=body) as r:
        text = await r.text()
        return r.status, json.loads(text) if text else None


@pytest.mark.timeout(120)
async def test_preferences_from_the_file_and_through_the_api(stack: Stack, tmp_path: Any) -> None:
    alice, ops = await HttpReceiver().start(), await HttpReceiver().start()
    try:
        routing = tmp_path / "routing.toml"
        routing.write_text(ROUTING, "utf-8")
        w = await stack.start_worker(TOCSIN_ROUTING_FILE=str(routing), TOCSIN_API_TOKEN=TOKEN,
                                     ALICE_URL=alice.url, OPS_URL=ops.url)
        tag = uuid.uuid4().hex[:6]
        fp = {k: f"{k}:{tag}" for k in ("noon", "night", "sev1", "sev3", "api", "reset")}
        await produce(stack.bootstrap, stack.topic("alerts"), [
            alert(fp["noon"], DAY.replace(hour=12)),
            alert(fp["night"], DAY.replace(hour=23)),
            alert(fp["sev1"], DAY.replace(hour=23), severity=1),
            alert(fp["sev3"], DAY.replace(hour=12), severity=3),
            alert(fp["night"], DAY.replace(hour=23, minute=30), action="resolve"),
        ])
        await ops.wait_for(lambda r: len(r) >= 5)
        await alice.wait_for(lambda r: len(r) >= 3)
        assert got(alice, fp["noon"]) == ["trigger"] and got(ops, fp["noon"]) == ["trigger"]
        assert got(alice, fp["night"]) == ["resolve"]  # quiet hours held the firing, never the recovery
        assert sorted(got(ops, fp["night"])) == ["resolve", "trigger"]  # two commands: either order
        assert got(alice, fp["sev1"]) == ["trigger"]  # a SEV1 goes through quiet hours
        assert got(alice, fp["sev3"]) == [] and got(ops, fp["sev3"]) == ["trigger"]  # she opted out of SEV3
        decisions = {d["value"]["alert"]["fingerprint"]: d["value"] for d in
                     await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=5, timeout=30)
                     if d["value"]["outcome"] == "notify"}
        night = decisions[fp["night"]]
        assert night["destinations"] == ["webhook:ops"]
        assert night["reason"] == ("first in window; preferences: webhook:alice removed "
                                   "(alice's quiet hours 22:00-07:00 UTC)")
        assert decisions[fp["sev3"]]["reason"].endswith("webhook:alice removed (alice opted out: severity 3)")
        assert decisions[fp["noon"]]["reason"] == "first in window"

        url = f"{w.url}/api/preferences"
        change = {"opt_out": [{"channels": ["webhook"]}]}
        async with aiohttp.ClientSession() as anon:
            assert (await api(anon, "PUT", f"{url}/alice", change))[0] == 401
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s:
            status, listed = await api(s, "GET", url)
            assert status == 200
            assert [(r["name"], r["kind"], r["source"]) for r in listed["recipients"]] == [
                ("alice", "person", "file"), ("ops", "team", "file")]
            assert listed["recipients"][0]["preferences"]["quiet_hours"] == {"start": "22:00", "end": "07:00"}
            status, body = await api(s, "PUT", f"{url}/ops", change)
            assert status == 403 and "team" in body["error"]
            status, body = await api(s, "PUT", f"{url}/alice", {"opt_in": [{"destinations": ["webhook:ops"]}]})
            assert status == 400 and "webhook:ops is not one of this recipient's destinations" in body["error"]
            status, body = await api(s, "PUT", f"{url}/alice", {"time_zone": "Nowhere/Else"})
            assert status == 400 and body["error"].startswith("time_zone: an IANA time zone name")
            assert (await api(s, "PUT", f"{url}/nobody", change))[0] == 404
            status, body = await api(s, "PUT", f"{url}/alice", change)
            assert status == 200 and body["source"] == "api" and body["preferences"]["opt_out"][0]["channels"] == [
                "webhook"] and body["preferences"]["quiet_hours"] is None
            # in force from the answer on (an alert of the moment: the API's version)
            await produce(stack.bootstrap, stack.topic("alerts"),
                          [alert(fp["api"], dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1), severity=1)])
            await ops.wait_for(lambda r: any(x.body["alert"]["fingerprint"] == fp["api"] for x in r))
            status, body = await api(s, "DELETE", f"{url}/alice")
            assert status == 200 and body["source"] == "file"
            await produce(stack.bootstrap, stack.topic("alerts"),
                          [alert(fp["reset"], dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1), severity=1)])
            await alice.wait_for(lambda r: any(x.body["alert"]["fingerprint"] == fp["reset"] for x in r))
        decisions = {d["value"]["alert"]["fingerprint"]: d["value"] for d in
                     await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=7, timeout=30)}
        assert decisions[fp["api"]]["reason"].endswith("webhook:alice removed (alice opted out: every alert)")
        await asyncio.sleep(0.5)
        assert got(alice, fp["api"]) == [] and got(ops, fp["reset"]) == ["trigger"]
    finally:
        await alice.stop()
        await ops.stop()
