"""The HTTP ways in (streams/ingest.py) against a real worker on the embedded broker: each
answers as the client it imitates expects, only after the broker has the alert, and the
alert is notified (or acknowledged, or resolved) through the ordinary pipeline."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from typing import Any

import aiohttp
import pytest

from tocsin.decisions.alertmanager import fingerprint

from .harness import HttpReceiver, Stack, WorkerProcess, read_topic

pytestmark = pytest.mark.integration
TOKEN = "ingest-token-0123456789"
API = "api-token-0123456789"


def iso(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def post(url: str, body: Any, token: str | None = TOKEN, auth: str | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = auth
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as s:
        import orjson

        async with s.post(url, data=orjson.dumps(body), headers=headers) as r:
            return r.status, dict(r.headers), await r.read()


async def sql(w: WorkerProcess, query: str) -> list[list[Any]] | None:
    """The rows of a query through the worker's analyst SQL (None: its store is not open yet)."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API}"}) as s, \
            s.post(f"{w.url}/api/sql", json={"sql": query}) as r:
        body = await r.json()
        if r.status == 503:
            return None
        assert r.status == 200, body
        return body["rows"]


async def until_rows(w: WorkerProcess, query: str, pred: Any, timeout: float = 30.0) -> list[list[Any]]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await sql(w, query)
        if rows is not None and pred(rows):
            return rows
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{query}: got {rows}")
        await asyncio.sleep(0.3)


@pytest.fixture
async def worker(stack: Stack, webhook: HttpReceiver) -> WorkerProcess:
    return await stack.start_worker(TOCSIN_INGEST_TOKEN=TOKEN, TOCSIN_API_TOKEN=API,
                                    TOCSIN_WEBHOOK_DEFAULT_URL=webhook.url, TOCSIN_RECORD_ENABLED="true",
                                    TOCSIN_RECORD_BATCH_S="0.2", TOCSIN_INGEST_RATE_PER_S="1",
                                    TOCSIN_INGEST_BURST="30")


async def test_alertmanager_api_v2_and_v1(stack: Stack, worker: WorkerProcess, webhook: HttpReceiver) -> None:
    labels = {"alertname": "HighLatency", "severity": "warning", "instance": "db1:9100", "job": "node"}
    fp = fingerprint(labels)
    firing = {"labels": labels, "annotations": {"summary": "p99 over 2 s"}, "startsAt": iso(now() - dt.timedelta(minutes=1)),
              "endsAt": iso(now() + dt.timedelta(minutes=4)), "generatorURL": "http://prom/graph"}
    status, headers, body = await post(f"{worker.url}/api/v2/alerts", [firing])
    assert (status, body) == (200, b"")  # Alertmanager's answer
    hooks = await webhook.wait_for(lambda r: len(r) == 1)
    alert = hooks[0].body["alert"]
    assert (alert["fingerprint"], alert["type"], alert["severity"], alert["summary"]) == (
        fp, "high_latency", 2, "p99 over 2 s")
    assert alert["entity"]["symbol"] == "db1:9100" and alert["details"]["labels"] == labels

    # Prometheus's re-sends: later validity, same start; and the same request again (a retry)
    resend = {**firing, "endsAt": iso(now() + dt.timedelta(minutes=5))}
    for body_ in ([resend], [firing]):
        assert (await post(f"{worker.url}/api/v2/alerts", body_))[0] == 200
    # v1: the same body, Alertmanager v1's answer
    status, _, body = await post(f"{worker.url}/api/v1/alerts", [resend])
    assert (status, body) == (200, b'{"status":"success"}')

    # resolved, then re-sent as Prometheus does: one resolution
    resolved = {**firing, "endsAt": iso(now() - dt.timedelta(seconds=1))}
    for _ in range(3):
        assert (await post(f"{worker.url}/api/v2/alerts", [resolved]))[0] == 200
    hooks = await webhook.wait_for(lambda r: len(r) >= 2)
    await asyncio.sleep(2.0)  # nothing more may arrive
    assert [h.body["alert"]["action"] for h in webhook.requests] == ["trigger", "resolve"]
    rows = await until_rows(worker, f"SELECT outcome, action, count() FROM tocsin.alerts FINAL WHERE fingerprint = "
                                    f"'{fp}' GROUP BY outcome, action ORDER BY outcome",
                            lambda r: sum(x[2] for x in r) >= 3)
    # the retry is the first alert again and v1's post the re-send again: one row each
    assert rows == [["bypass", "resolve", 1], ["notify", "trigger", 1], ["suppress", "trigger", 1]], rows

    # refusals: the valid alerts are taken, the others named; the body of v2's 400 is a JSON string
    other = {"labels": {"alertname": "Other", "severity": "critical"}, "startsAt": iso(now())}
    status, headers, body = await post(f"{worker.url}/api/v2/alerts", [other, {"labels": {}}])
    assert status == 400 and headers["Content-Type"] == "application/json"
    assert body == b'"alert 1: at least one label pair required"'
    await webhook.wait_for(lambda r: any(h.body["alert"]["type"] == "other" for h in r))
    status, _, body = await post(f"{worker.url}/api/v1/alerts", {"not": "an array"})
    assert status == 400 and body.startswith(b'{"status":"error","errorType":"bad_data","error":"expected a JSON array')
    status, _, body = await post(f"{worker.url}/api/v2/alerts", [firing], token="wrong")
    assert status == 401
    status, _, body = await post(f"{worker.url}/api/v2/alerts", [firing], auth="Basic " + base64.b64encode(
        f"prometheus:{TOKEN}".encode()).decode())
    assert status == 200  # basic auth's password, as Prometheus's basic_auth sends it

    # what amtool and Alertmanager clients ask
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{worker.url}/api/v2/status") as r:
            st = await r.json()
            assert r.status == 200 and st["cluster"]["status"] == "ready" and st["config"] == {"original": ""}
            assert {"version", "revision", "branch", "buildUser", "buildDate", "goVersion"} <= set(st["versionInfo"])
            assert dt.datetime.fromisoformat(st["uptime"].replace("Z", "+00:00")) < now()
        for path in ("/-/ready", "/-/healthy"):
            async with s.get(worker.url + path) as r:
                assert (r.status, await r.text()) == (200, "OK")


async def test_alertmanager_webhook_receiver(stack: Stack, worker: WorkerProcess, webhook: HttpReceiver) -> None:
    base = {"status": "firing", "labels": {"alertname": "DiskFull", "severity": "critical"},  # noqa: E501
            "annotations": {"description": "/ at 97%"}, "startsAt": iso(now()), "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prom/x"}
    one, two = {**base, "fingerprint": "1111111111111111"}, {**base, "fingerprint": "2222222222222222",
                                                             "labels": {"alertname": "DiskFull", "severity": "info"}}
    payload = {"version": "4", "groupKey": "{}:{alertname=\"DiskFull\"}", "status": "firing", "receiver": "tocsin",
               "groupLabels": {"alertname": "DiskFull"}, "commonLabels": {}, "commonAnnotations": {},
               "externalURL": "http://am:9093", "truncatedAlerts": 0, "alerts": [one, two]}
    status, _, body = await post(f"{worker.url}/api/ingest/alertmanager", payload)
    assert (status, body) == (200, b'{"status":"success"}')
    await webhook.wait_for(lambda r: len(r) == 1)  # the SEV1 (the SEV3 goes to the console only)
    assert webhook.requests[0].body["alert"]["fingerprint"] == "1111111111111111"
    alerts = await read_topic(stack.bootstrap, stack.topic("alerts"), min_count=2)
    assert {a["key"] for a in alerts} == {"1111111111111111", "2222222222222222"}
    # Alertmanager sends the group again (another alert joined it): recognised, not notified again
    assert (await post(f"{worker.url}/api/ingest/alertmanager", payload))[0] == 200
    resolved = {**one, "status": "resolved", "endsAt": iso(now())}
    assert (await post(f"{worker.url}/api/ingest/alertmanager", {**payload, "status": "resolved",
                                                                 "alerts": [resolved]}))[0] == 200
    await webhook.wait_for(lambda r: len(r) == 2)
    await asyncio.sleep(1.5)
    assert [h.body["alert"]["action"] for h in webhook.requests] == ["trigger", "resolve"]
    status, _, body = await post(f"{worker.url}/api/ingest/alertmanager", {"version": "4"})
    assert status == 400 and b"alerts: expected an array" in body


async def test_pagerduty_events_v2(stack: Stack, worker: WorkerProcess, webhook: HttpReceiver) -> None:
    url = f"{worker.url}/v2/enqueue"
    event = {"routing_key": "R" * 32, "event_action": "trigger", "dedup_key": "db2-lag", "client": "Zabbix",
             "payload": {"summary": "DB replica lag 45 s", "source": "db2", "severity": "critical",
                         "custom_details": {"lag_s": 45}}}
    status, _, body = await post(url, event)
    assert status == 202
    import orjson

    assert orjson.loads(body) == {"status": "success", "message": "Event processed", "dedup_key": "db2-lag"}
    await webhook.wait_for(lambda r: len(r) == 1)
    assert webhook.requests[0].body["alert"]["fingerprint"] == "db2-lag"
    assert webhook.requests[0].body["alert"]["details"]["custom_details"] == {"lag_s": 45}

    # a trigger without a key gets a fresh one
    no_key = {k: v for k, v in event.items() if k != "dedup_key"}
    no_key["payload"] = {**event["payload"], "severity": "info"}  # SEV3: the console only
    status, _, body = await post(url, no_key)
    fresh = orjson.loads(body)["dedup_key"]
    assert status == 202 and len(fresh) == 32 and fresh != "db2-lag"

    # invalid: every error, as PagerDuty answers
    status, _, body = await post(url, {"routing_key": "R" * 32, "event_action": "trigger",
                                       "payload": {"summary": "", "severity": "fatal"}})
    answer = orjson.loads(body)
    assert status == 400 and answer["status"] == "invalid event" and answer["message"] == "Event object is invalid"
    assert "'payload.summary' is missing or blank" in answer["errors"] and len(answer["errors"]) == 3
    status, _, body = await post(url, "not an object")
    assert status == 400 and orjson.loads(body)["errors"] == ["Event object must be a JSON object"]

    # acknowledge: a lifecycle event; the status table folds it. The notification may reach
    # the webhook before the status table has folded its decision: the acknowledge names the
    # alert it finds there, so wait for it
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API}"}) as s:
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            async with s.get(f"{worker.url}/api/alerts") as r:
                items = (await r.json())["items"] if r.status == 200 else []
            if any(i["fingerprint"] == "db2-lag" for i in items):
                break
            assert asyncio.get_running_loop().time() < deadline, "db2-lag never reached the status table"
            await asyncio.sleep(0.2)
    ack = {"routing_key": "R" * 32, "event_action": "acknowledge", "dedup_key": "db2-lag", "client": "Zabbix"}
    assert (await post(url, ack))[0] == 202
    lifecycle = await read_topic(stack.bootstrap, stack.topic("lifecycle"), until=lambda m: any(
        x["value"]["action"] == "acknowledge" for x in m))
    acked = next(x for x in lifecycle if x["value"]["action"] == "acknowledge")
    assert acked["key"] == "db2-lag" and acked["value"]["by"] == "pagerduty:Zabbix"
    assert acked["value"]["alert_id"] == webhook.requests[0].body["alert"]["alert_id"]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API}"}) as s:
        for _ in range(60):
            async with s.get(f"{worker.url}/api/alerts?status=acknowledged") as r:
                items = (await r.json())["items"]
            if items:
                break
            await asyncio.sleep(0.25)
    assert [i["fingerprint"] for i in items] == ["db2-lag"] and items[0]["acknowledged_by"] == "pagerduty:Zabbix"

    # resolve, sent twice: one resolution, with what the alert was
    res = {"routing_key": "R" * 32, "event_action": "resolve", "dedup_key": "db2-lag"}
    for _ in range(2):
        assert (await post(url, res))[0] == 202
    await webhook.wait_for(lambda r: len(r) == 2)
    await asyncio.sleep(1.5)
    assert len(webhook.requests) == 2
    resolve = webhook.requests[1].body["alert"]
    assert (resolve["action"], resolve["severity"], resolve["summary"]) == ("resolve", 1, "DB replica lag 45 s")


async def test_a_client_over_its_rate_is_answered_429(stack: Stack) -> None:
    """Burst 30, then one every 5 s, per client: a flood from one credential is limited while
    another client (another basic-auth user) still gets through. (One a second made the test
    depend on 35 requests taking under a second; on a loaded machine they did not.)"""
    worker = await stack.start_worker(TOCSIN_INGEST_TOKEN=TOKEN, TOCSIN_INGEST_RATE_PER_S="0.2",
                                      TOCSIN_INGEST_BURST="30")
    flood = "Basic " + base64.b64encode(f"flood:{TOKEN}".encode()).decode()
    calm = "Basic " + base64.b64encode(f"calm:{TOKEN}".encode()).decode()
    bad = {"routing_key": "R" * 32, "event_action": "resolve"}  # 400: no broker round trip
    answers = [await post(f"{worker.url}/v2/enqueue", bad, auth=flood) for _ in range(35)]
    codes = [a[0] for a in answers]
    assert codes[:30] == [400] * 30 and set(codes[30:]) == {429}, codes
    import orjson

    status, headers, body = answers[-1]
    assert int(headers["Retry-After"]) >= 1 and orjson.loads(body)["status"] == "throttle exceeded"
    assert (await post(f"{worker.url}/v2/enqueue", bad, auth=calm))[0] == 400
    status, headers, body = await post(f"{worker.url}/api/v2/alerts", [], auth=flood)
    assert status == 429 and body.startswith(b'"too many requests')  # v2: a JSON string
    await asyncio.sleep(5.1)
    assert (await post(f"{worker.url}/api/v2/alerts", [], auth=flood))[0] == 200  # one every 5 s again


async def test_ingest_is_refused_without_a_token_and_open_with_ingest_open(stack: Stack) -> None:
    closed = await stack.start_worker()
    status, _, body = await post(f"{closed.url}/api/v2/alerts", [], token=None)
    assert status == 403 and b"TOCSIN_INGEST_TOKEN" in body
    opened = await stack.start_worker(TOCSIN_INGEST_OPEN="true")
    assert (await post(f"{opened.url}/api/v2/alerts", [], token=None))[0] == 200


async def test_no_answer_before_the_broker_acknowledges(stack: Stack, broker: Any) -> None:
    """The broker gone: the alert is not acknowledged, so the answer is 503 (sending again is
    safe), after TOCSIN_API_ACK_TIMEOUT_S, never a 200 for an alert the broker does not have."""
    w = await stack.start_worker(TOCSIN_INGEST_TOKEN=TOKEN, TOCSIN_API_ACK_TIMEOUT_S="2")
    broker.stop()
    alert = [{"labels": {"alertname": "Lost", "severity": "critical"}, "startsAt": iso(now())}]
    started = asyncio.get_running_loop().time()
    status, headers, body = await post(f"{w.url}/api/v2/alerts", alert)
    assert status == 503 and headers["Retry-After"] == "5" and b"did not acknowledge within 2 s" in body
    assert asyncio.get_running_loop().time() - started >= 2.0
    event = {"routing_key": "R" * 32, "event_action": "trigger",
             "payload": {"summary": "lost", "source": "x", "severity": "info"}}
    status, _, body = await post(f"{w.url}/v2/enqueue", event)
    assert status == 503 and b'"status":"unavailable"' in body
    w.kill()  # its broker is gone for good: a graceful stop would only wait out its timeouts
