"""Silences through Debian's ``amtool`` against a real worker (real broker, chdb recording), and
the PagerDuty channel end to end: trigger, an on-call's acknowledge, the recovery's resolve."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tocsin.schemas import create_alert, dumps

from .channel_peers import HttpPeer, pagerduty_events_v2
from .harness import HttpReceiver, Stack, WorkerProcess, produce, read_topic

pytestmark = pytest.mark.integration
TOKEN = "silence-api-token"
AMTOOL = shutil.which("amtool")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def alert(account: str, *, action: str = "trigger", fingerprint: str | None = None, severity: int = 2,
          **kw: Any) -> tuple[bytes, bytes]:
    ev = create_alert("position_limit_hit", severity, f"limit {account} {action}", account_id=account,
                      fingerprint=fingerprint, action=action, event_timestamp=now(), **kw)
    return ev.fingerprint.encode(), dumps(ev)


class Amtool:
    def __init__(self, url: str, config: Path | None) -> None:
        self.url, self.config = url, config

    async def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        assert AMTOOL is not None
        cmd = [AMTOOL, *args, f"--alertmanager.url={self.url}", "--timeout=20s"]
        if self.config is not None:
            cmd.append(f"--http.config.file={self.config}")
        r = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout=30)
        if ok:
            assert r.returncode == 0, f"{args}: {r.stderr}"
        return r


async def sql(session: aiohttp.ClientSession, base: str, text: str) -> list[list[Any]]:
    async with session.post(f"{base}/api/sql", json={"sql": text}) as r:
        body = await r.json(content_type=None)
        return body["rows"] if r.status == 200 else []


async def until_rows(session: aiohttp.ClientSession, base: str, text: str, want: int, timeout: float = 30) -> list[list[Any]]:
    deadline = time.monotonic() + timeout
    rows: list[list[Any]] = []
    while time.monotonic() < deadline:
        rows = await sql(session, base, text)
        if len(rows) >= want:
            return rows
        await asyncio.sleep(0.5)
    raise AssertionError(f"{text}: wanted {want} rows, got {rows}")


@pytest.mark.skipif(AMTOOL is None, reason="amtool is not installed (Debian's prometheus-alertmanager package)")
@pytest.mark.timeout(90)
async def test_amtool_silences_a_worker_and_a_notified_firing_still_resolves(
        stack: Stack, webhook: HttpReceiver, tmp_path: Path) -> None:
    w = await stack.start_worker(TOCSIN_API_TOKEN=TOKEN, TOCSIN_RECORD_ENABLED="true", TOCSIN_RECORD_BATCH_S="0.2",
                                 TOCSIN_WEBHOOK_DEFAULT_URL=webhook.url)
    http_config = tmp_path / "amtool-http.yml"
    http_config.write_text(f"authorization:\n  credentials: {TOKEN}\n")
    amtool = Amtool(w.url, http_config)
    tag = uuid.uuid4().hex[:6]
    quiet, other, loud = f"acc-{tag}-quiet", f"acc-{tag}-other", f"acc-{tag}-loud"

    # a firing notified before the silence
    await produce(stack.bootstrap, stack.topic("alerts"), [alert(loud)])
    await webhook.wait_for(lambda r: any(x.body["alert"]["entity"].get("account_id") == loud for x in r))

    # writing needs the API token; reading with it works
    refused = await Amtool(w.url, None)("silence", "add", f"account_id=~acc-{tag}-(quiet|loud)", "-c", "x",
                                        ok=False)
    assert refused.returncode != 0 and "401" in refused.stderr + refused.stdout
    added = await amtool("silence", "add", f"account_id=~acc-{tag}-(quiet|loud)", "type=position_limit_hit",
                         "--comment=maintenance window", "--author=tester", "--duration=1h")
    sid = added.stdout.strip()
    assert UUID_RE.match(sid), added.stdout
    updated = await amtool("silence", "update", sid, "--comment=maintenance, extended")
    # an active silence's comment changes in place: the same id (amtool 0.25's -q prints a pointer here)
    assert [line.split()[0] for line in updated.stdout.splitlines()[1:]] == [sid]
    shown = json.loads((await amtool("silence", "query", "-o", "json")).stdout)
    (s,) = [x for x in shown if x["id"] == sid]
    assert s["status"]["state"] == "active" and s["comment"] == "maintenance, extended" and s["createdBy"] == "tester"
    assert {(m["name"], m["value"], m["isRegex"]) for m in s["matchers"]} == {
        ("account_id", f"acc-{tag}-(quiet|loud)", True), ("type", "position_limit_hit", False)}
    by_filter = await amtool("silence", "query", "-q", "type=position_limit_hit")
    assert by_filter.stdout.split() == [sid]

    # a matching firing is silenced, another account's is not, the notified firing's resolution is
    # notified though silenced, and a silenced firing's resolution is silenced too
    await produce(stack.bootstrap, stack.topic("alerts"),
                  [alert(quiet), alert(other), alert(loud, action="resolve"), alert(quiet, action="resolve")])
    await webhook.wait_for(lambda r: any(x.body["alert"]["entity"].get("account_id") == other for x in r)
                           and any(x.body["alert"]["action"] == "resolve" for x in r))
    decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=5, timeout=30)
    got = {(d["value"]["alert"]["entity"]["account_id"], d["value"]["alert"]["action"]):
           (d["value"]["outcome"], d["value"]["reason"]) for d in decisions}
    assert got[(quiet, "trigger")] == ("silenced", sid)
    assert got[(quiet, "resolve")] == ("silenced", sid)
    assert got[(loud, "resolve")][0] == "bypass"
    assert got[(other, "trigger")][0] == "notify"
    await asyncio.sleep(1.5)  # nothing silenced may arrive late
    delivered = {(x.body["alert"]["entity"]["account_id"], x.body["alert"]["action"]) for x in webhook.requests}
    assert delivered == {(loud, "trigger"), (other, "trigger"), (loud, "resolve")}

    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
        rows = await until_rows(session, w.url, "SELECT account_id, action, outcome, reason FROM tocsin.alerts FINAL "
                                f"WHERE account_id = '{quiet}' ORDER BY action", 2)
        assert [tuple(r) for r in rows] == [(quiet, "resolve", "silenced", sid), (quiet, "trigger", "silenced", sid)]

    # expired: no longer shown by default, shown with --expired, and the next firing is notified
    await amtool("silence", "expire", sid)
    assert sid not in (await amtool("silence", "query", "-q")).stdout
    assert (await amtool("silence", "query", "-q", "--expired")).stdout.split() == [sid]
    await produce(stack.bootstrap, stack.topic("alerts"), [alert(quiet, fingerprint=f"again:{tag}")])
    await webhook.wait_for(lambda r: any(x.body["alert"]["fingerprint"] == f"again:{tag}" for x in r))
    missing = await amtool("silence", "expire", str(uuid.uuid4()), ok=False)
    assert missing.returncode != 0


async def api(session: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> tuple[int, Any]:
    async with session.request(method, url, json=body) as r:
        text = await r.text()
        return r.status, json.loads(text) if text else None


@pytest.mark.timeout(90)
async def test_silences_api_as_alertmanager_answers_and_mute_resolved(stack: Stack, webhook: HttpReceiver) -> None:
    """The API without amtool: Alertmanager's answers and update rules, and Tocsin's
    ``muteResolved``, which mutes a notified firing's resolution too."""
    w = await stack.start_worker(TOCSIN_API_TOKEN=TOKEN, TOCSIN_WEBHOOK_DEFAULT_URL=webhook.url)
    tag = uuid.uuid4().hex[:6]
    fp = f"disk:{tag}"
    await produce(stack.bootstrap, stack.topic("alerts"), [alert("a", fingerprint=fp)])
    await webhook.wait_for(lambda r: any(x.body["alert"]["fingerprint"] == fp for x in r))
    start, end = now(), now() + dt.timedelta(hours=1)
    silence = {"matchers": [{"name": "fingerprint", "value": fp, "isRegex": False, "isEqual": True}],
               "startsAt": start.isoformat(), "endsAt": end.isoformat(), "createdBy": "api", "comment": "disk swap",
               "muteResolved": True}
    silences = f"{w.url}/api/v2/silences"
    async with aiohttp.ClientSession() as anon:
        status, _ = await api(anon, "GET", silences)
        assert status == 401
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s:
        status, body = await api(s, "POST", silences, {**silence, "endsAt": (start - dt.timedelta(minutes=1)).isoformat()})
        assert (status, body) == (400, "Failed to create silence: start time must be before end time")
        status, body = await api(s, "POST", silences, {**silence, "id": str(uuid.uuid4())})
        assert status == 404
        status, body = await api(s, "POST", silences, {**silence, "matchers": [
            {"name": "x", "value": "(", "isRegex": True}]})
        assert status == 400 and "regular expression" in body
        status, body = await api(s, "POST", silences, silence)
        assert status == 200
        sid = body["silenceID"]
        status, got = await api(s, "GET", f"{w.url}/api/v2/silence/{sid}")
        assert status == 200 and got["status"] == {"state": "active"} and got["muteResolved"] is True
        # in place: a later end; a new silence (the old one expired): other matchers
        status, body = await api(s, "POST", silences, {**got, "endsAt": (end + dt.timedelta(hours=1)).isoformat()})
        assert (status, body) == (200, {"silenceID": sid})
        changed = {**got, "matchers": [*got["matchers"], {"name": "job", "value": "node", "isRegex": False}]}
        status, body = await api(s, "POST", silences, changed)
        assert status == 200 and body["silenceID"] != sid
        replaced = body["silenceID"]
        status, old = await api(s, "GET", f"{w.url}/api/v2/silence/{sid}")
        assert old["status"]["state"] == "expired"
        status, body = await api(s, "DELETE", f"{w.url}/api/v2/silence/{replaced}")
        assert status == 200
        # muteResolved: the notified firing's resolution is muted too
        status, body = await api(s, "POST", silences, silence)
        muting = body["silenceID"]
        await produce(stack.bootstrap, stack.topic("alerts"), [alert("a", fingerprint=fp, action="resolve")])
        decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=2, timeout=30)
        assert [(d["value"]["outcome"], d["value"]["reason"]) for d in decisions][1] == ("silenced", muting)
        status, listed = await api(s, "GET", f"{silences}?active=false&pending=false")
        assert status == 200 and {x["id"] for x in listed} == {sid, replaced}
    await asyncio.sleep(1.0)
    assert [x.body["alert"]["action"] for x in webhook.requests if x.body["alert"]["fingerprint"] == fp] == ["trigger"]


@pytest.mark.timeout(90)
async def test_a_worker_started_later_decides_with_the_silences_on_the_topic(stack: Stack) -> None:
    """Silences are events: a worker that starts after one was set reads it from P.silences
    before it decides, so an alert waiting on P.alerts meanwhile is silenced all the same."""
    first = await stack.start_worker(TOCSIN_API_TOKEN=TOKEN)
    fp = f"late:{uuid.uuid4().hex[:6]}"
    silence = {"matchers": [{"name": "fingerprint", "value": fp, "isRegex": False}], "startsAt": now().isoformat(),
               "endsAt": (now() + dt.timedelta(hours=1)).isoformat(), "createdBy": "api", "comment": "c"}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s:
        status, body = await api(s, "POST", f"{first.url}/api/v2/silences", silence)
    assert status == 200
    first.stop()
    await produce(stack.bootstrap, stack.topic("alerts"), [alert("a", fingerprint=fp)])
    second = await stack.start_worker(TOCSIN_API_TOKEN=TOKEN)
    decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=1, timeout=30)
    assert [(d["value"]["outcome"], d["value"]["reason"]) for d in decisions] == [("silenced", body["silenceID"])]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s:
        status, shown = await api(s, "GET", f"{second.url}/api/v2/silence/{body['silenceID']}")
    assert status == 200 and shown["status"]["state"] == "active"


@pytest.mark.timeout(90)
async def test_pagerduty_trigger_acknowledge_and_resolve_through_a_worker(stack: Stack, tmp_path: Path) -> None:
    key = "pdR0utingKey0123456789abcdefABCD"
    peer = await HttpPeer().start()
    peer.script = pagerduty_events_v2(key)
    routing = tmp_path / "routing.toml"
    routing.write_text('always = []\n[severity]\n1 = ["pagerduty:default"]\n2 = []\n3 = []\n')
    try:
        w: WorkerProcess = await stack.start_worker(
            TOCSIN_API_TOKEN=TOKEN, TOCSIN_ROUTING_FILE=str(routing), TOCSIN_PAGERDUTY_ROUTING_KEY=key,
            TOCSIN_PAGERDUTY_API_BASE=peer.base_url)
        fp = f"kill:{uuid.uuid4().hex[:6]}"
        await produce(stack.bootstrap, stack.topic("alerts"), [alert("a", fingerprint=fp, severity=1)])
        await until_received(peer, 1)
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s:
            deadline = time.monotonic() + 30
            while True:  # the status knows it was paged once the decision is folded
                status, body = await api(s, "GET", f"{w.url}/api/alerts")
                if any(x["fingerprint"] == fp for x in body["items"]):
                    break
                assert time.monotonic() < deadline, body
                await asyncio.sleep(0.3)
            status, _ = await api(s, "POST", f"{w.url}/api/alerts/{fp}/acknowledge", {"by": "ann"})
            assert status == 202
        await until_received(peer, 2)
        await produce(stack.bootstrap, stack.topic("alerts"), [alert("a", fingerprint=fp, severity=1, action="resolve")])
        await until_received(peer, 3)
        events = [json.loads(r.body) for r in peer.received]
        assert [(e["event_action"], e["dedup_key"]) for e in events] == [
            ("trigger", fp), ("acknowledge", fp), ("resolve", fp)]
        assert all(e["routing_key"] == key for e in events)
        attempts = await read_topic(stack.bootstrap, stack.topic("attempts"), timeout=20,
                                    until=lambda xs: sum(x["value"]["status"] == "sent" for x in xs) >= 3)
        sent = [a["value"] for a in attempts if a["value"]["status"] == "sent"]  # others: PagerDuty's rate, waited for
        assert len({a["delivery_id"] for a in sent}) == 3 and {a["response_code"] for a in sent} == {202}
        assert {a["value"]["status"] for a in attempts} <= {"sent", "rate_limited"}
        assert all(key not in json.dumps(a["value"]) for a in attempts)
        assert key not in w.log_tail(10_000)
    finally:
        await peer.stop()


async def until_received(peer: HttpPeer, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(peer.received) < n:
        assert time.monotonic() < deadline, f"the PagerDuty peer got {len(peer.received)} events, wanted {n}"
        await asyncio.sleep(0.1)
