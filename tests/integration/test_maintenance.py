"""Maintenance windows on a real worker (real broker, chdb recording, a real webhook receiver):
a one-off window set through the API mutes a firing alert while the recovery of an alert notified
before it is still delivered; a routing file's recurring window ([[time_intervals]] and
[[maintenance]]) mutes too; both recorded with outcome ``muted`` and the window as the reason;
``tocsin maintenance list|expire`` against the same worker."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest

from tocsin.schemas import create_alert, dumps

from .harness import HttpReceiver, Stack, produce, read_topic
from .test_silences import api, until_rows

pytestmark = pytest.mark.integration
TOKEN = "maintenance-api-token"

ROUTING = """
[severity]
1 = ["webhook:default"]
2 = ["webhook:default"]

[[time_intervals]]
name = "always"
[[time_intervals.time_intervals]]
years = ["2000:2999"]

[[maintenance]]
name = "db-migration"
time_intervals = ["always"]
matchers = ['type="db_write_fail"']
"""


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def alert(account: str, *, action: str = "trigger", type_: str = "position_limit_hit") -> tuple[bytes, bytes]:
    ev = create_alert(type_, 2, f"{type_} {account} {action}", account_id=account, action=action,
                      event_timestamp=now())
    return ev.fingerprint.encode(), dumps(ev)


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TOCSIN_API_TOKEN": TOKEN}
    return subprocess.run([sys.executable, "-m", "tocsin.cli.main", "maintenance", *args, "--url", url],
                          env=env, capture_output=True, text=True, timeout=60)


def delivered(webhook: HttpReceiver) -> set[tuple[str, str, str]]:
    return {(x.body["alert"]["type"], x.body["alert"]["entity"]["account_id"], x.body["alert"]["action"])
            for x in webhook.requests}


@pytest.mark.timeout(120)
async def test_a_window_mutes_firing_alerts_and_a_notified_alerts_recovery_is_still_delivered(
        stack: Stack, webhook: HttpReceiver, tmp_path: Path) -> None:
    routing = tmp_path / "routing.toml"
    routing.write_text(ROUTING)
    w = await stack.start_worker(TOCSIN_API_TOKEN=TOKEN, TOCSIN_RECORD_ENABLED="true", TOCSIN_RECORD_BATCH_S="0.2",
                                 TOCSIN_WEBHOOK_DEFAULT_URL=webhook.url, TOCSIN_ROUTING_FILE=str(routing))
    tag = uuid.uuid4().hex[:6]
    before, during, other = f"acc-{tag}-before", f"acc-{tag}-during", f"x-{tag}-other"

    # a firing notified before the window
    await produce(stack.bootstrap, stack.topic("alerts"), [alert(before)])
    await webhook.wait_for(lambda r: any(x.body["alert"]["entity"].get("account_id") == before for x in r))

    window = {"name": "orders db upgrade", "matchers": [{"name": "account_id", "value": f"acc-{tag}-.*",
                                                         "isRegex": True}],
              "startsAt": now().isoformat(), "endsAt": (now() + dt.timedelta(hours=1)).isoformat(),
              "createdBy": "tester", "comment": "CHG-1"}
    async with aiohttp.ClientSession() as anon:
        status, _ = await api(anon, "POST", f"{w.url}/api/maintenance", window)
        assert status == 401  # writing needs the API token
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s:
        status, body = await api(s, "POST", f"{w.url}/api/maintenance", {**window, "muteResolved": True})
        assert status == 400
        status, body = await api(s, "POST", f"{w.url}/api/maintenance", window)
        assert status == 200, body
        wid = body["windowID"]
        status, shown = await api(s, "GET", f"{w.url}/api/maintenance/{wid}")
        assert status == 200 and shown["status"] == {"state": "active"} and shown["name"] == "orders db upgrade"

    # in the window: a firing is muted, its recovery too (never notified); the recovery of the
    # alert notified before the window is delivered; an alert the window does not match is
    # notified; the routing file's recurring window mutes a db_write_fail whatever its account
    await produce(stack.bootstrap, stack.topic("alerts"), [
        alert(during), alert(other), alert(before, action="resolve"), alert(during, action="resolve"),
        alert(other, type_="db_write_fail")])
    await webhook.wait_for(lambda r: any(x.body["alert"]["entity"].get("account_id") == other for x in r)
                           and any(x.body["alert"]["action"] == "resolve" for x in r))
    decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=6, timeout=30)
    got = {(d["value"]["alert"]["type"], d["value"]["alert"]["entity"]["account_id"], d["value"]["alert"]["action"]):
           (d["value"]["outcome"], d["value"]["reason"]) for d in decisions}
    reason = f"window:{wid} orders db upgrade"
    assert got[("position_limit_hit", during, "trigger")] == ("muted", reason)
    assert got[("position_limit_hit", during, "resolve")] == ("muted", reason)
    assert got[("position_limit_hit", before, "resolve")][0] == "bypass"
    assert got[("position_limit_hit", other, "trigger")][0] == "notify"
    assert got[("db_write_fail", other, "trigger")] == ("muted", "interval:always rule db-migration")
    await asyncio.sleep(1.5)  # nothing muted may arrive late
    assert delivered(webhook) == {("position_limit_hit", before, "trigger"), ("position_limit_hit", other, "trigger"),
                                  ("position_limit_hit", before, "resolve")}

    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s:
        rows = await until_rows(s, w.url, "SELECT type, action, outcome, reason FROM tocsin.alerts FINAL "
                                f"WHERE outcome = 'muted' AND (account_id = '{during}' OR account_id = '{other}') "
                                "ORDER BY type, action", 3)
    assert [tuple(r) for r in rows] == [("db_write_fail", "trigger", "muted", "interval:always rule db-migration"),
                                        ("position_limit_hit", "resolve", "muted", reason),
                                        ("position_limit_hit", "trigger", "muted", reason)]

    # the command line: listed, expired, then no longer active; the next firing is notified
    listed = cli(w.url, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(x["id"], x["status"]["state"]) for x in json.loads(listed.stdout)] == [(wid, "active")]
    expired = cli(w.url, "expire", wid)
    assert expired.returncode == 0 and wid in expired.stdout, expired.stderr
    assert json.loads(cli(w.url, "list", "--json").stdout) == []
    assert wid in cli(w.url, "list", "--expired").stdout
    missing = cli(w.url, "expire", "no-such-window")
    assert missing.returncode == 1 and "404" in missing.stderr
    later = f"acc-{tag}-later"
    await produce(stack.bootstrap, stack.topic("alerts"), [alert(later)])
    await webhook.wait_for(lambda r: any(x.body["alert"]["entity"].get("account_id") == later for x in r))


@pytest.mark.timeout(90)
async def test_cli_sets_a_window(stack: Stack) -> None:
    w = await stack.start_worker(TOCSIN_API_TOKEN=TOKEN)
    added = cli(w.url, "add", "-m", 'service="orders"', "--name", "night work", "--duration", "2h",
                "--created-by", "ann")
    assert added.returncode == 0, added.stderr
    wid = added.stdout.strip()
    (shown,) = json.loads(cli(w.url, "list", "--json").stdout)
    assert (shown["id"], shown["name"], shown["createdBy"], shown["matchers"][0]["value"]) == (
        wid, "night work", "ann", "orders")
    # two hours from the command's now; the worker starts it at its own now, never before (a little later)
    length = dt.datetime.fromisoformat(shown["endsAt"]) - dt.datetime.fromisoformat(shown["startsAt"])
    assert dt.timedelta(hours=2) - dt.timedelta(minutes=1) < length <= dt.timedelta(hours=2)
    bad = cli(w.url, "add", "-m", "service", "--duration", "2h")
    assert bad.returncode == 1 and "bad matcher" in bad.stderr
    both = cli(w.url, "add", "-m", 'a="b"')
    assert both.returncode == 1 and "--end" in both.stderr
