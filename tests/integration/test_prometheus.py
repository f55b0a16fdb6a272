"""The real clients: Debian's Prometheus 2.x posting to a worker as to an Alertmanager, and
Alertmanager 0.25 forwarding to the worker's webhook ingest (``make prometheus`` installs
both; each test is skipped, with the reason, where its binary is missing).

Prometheus evaluates an alert on ``up{job="x"} == 1`` every second against a tiny /metrics
server of the test's own: the alert fires while that server runs and resolves when it stops.
Prometheus re-sends the firing alert every second (``--rules.alert.resend-delay=1s``) and the
resolved one for 15 minutes: the receiver gets one notification and one resolution, and
ClickHouse has both.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import shutil
import string
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from tocsin.decisions.alertmanager import fingerprint
from tocsin.infra.broker import free_port

from .harness import HttpReceiver, Stack, WorkerProcess, read_topic
from .test_ingest import API, TOKEN, until_rows

pytestmark = pytest.mark.integration

PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
needs_prometheus = pytest.mark.skipif(PROMETHEUS is None, reason=(
    "prometheus is not installed (make prometheus: Debian's prometheus package)"))
needs_alertmanager = pytest.mark.skipif(ALERTMANAGER is None, reason=(
    "prometheus-alertmanager is not installed (make prometheus: Debian's prometheus-alertmanager package)"))


class Process:
    """A server binary started for one test, its output in a log file."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)

    def tail(self, n: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text("utf-8", "replace").splitlines()[-n:])
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


async def wait_http(url: str, proc: Process, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            if proc.proc.poll() is not None:
                raise RuntimeError(f"{url}: the server exited:\n{proc.tail()}")
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with s.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} not ready:\n{proc.tail()}")


class Target:
    """A /metrics endpoint Prometheus scrapes: up while it runs."""

    def __init__(self) -> None:
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", lambda r: web.Response(text="# TYPE ok gauge\nok 1\n"))
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture
async def worker(stack: Stack, webhook: HttpReceiver) -> WorkerProcess:
    return await stack.start_worker(TOCSIN_INGEST_TOKEN=TOKEN, TOCSIN_API_TOKEN=API,
                                    TOCSIN_WEBHOOK_DEFAULT_URL=webhook.url, TOCSIN_RECORD_ENABLED="true",
                                    TOCSIN_RECORD_BATCH_S="0.2")


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    t = Target()
    await t.start()
    yield t
    await t.stop()


def prometheus_config(tmp: Path, target: Target, worker: WorkerProcess, api_version: str) -> Path:
    rules = tmp / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "tocsin-test", "interval": "1s", "rules": [{
        "alert": "TargetUp", "expr": 'up{job="x"} == 1', "for": "0s",
        "labels": {"severity": "warning", "account_id": "ACC1"},
        "annotations": {"summary": "target {{ $labels.instance }} is up"}}]}]}))
    config = tmp / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "500ms"},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": "x", "static_configs": [{"targets": [f"127.0.0.1:{target.port}"]}]}],
        "alerting": {"alertmanagers": [{
            "api_version": api_version, "timeout": "5s",
            "authorization": {"type": "Bearer", "credentials": TOKEN},
            "static_configs": [{"targets": [f"127.0.0.1:{worker.port}"]}]}]},
    }))
    return config


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for p in started:
        p.stop()


@needs_prometheus
@pytest.mark.parametrize("api_version", ["v2", "v1"])
async def test_prometheus_notifies_once_and_resolves_once(
        tmp_path: Path, stack: Stack, worker: WorkerProcess, webhook: HttpReceiver, target: Target,
        prometheus: list[Process], api_version: str) -> None:
    assert PROMETHEUS is not None
    port = free_port()
    config = prometheus_config(tmp_path, target, worker, api_version)
    prom = Process([PROMETHEUS, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}", "--rules.alert.resend-delay=1s",
                    "--log.level=debug"], tmp_path / "prometheus.log")
    prometheus.append(prom)
    await wait_http(f"http://127.0.0.1:{port}/-/ready", prom)

    def actions() -> list[str]:
        return [r.body["alert"]["action"] for r in webhook.requests]

    try:
        await webhook.wait_for(lambda r: len(r) >= 1, timeout=30)
    except TimeoutError:
        raise AssertionError(f"no notification:\nprometheus:\n{prom.tail()}\nworker:\n{worker.log_tail()}") from None
    first = webhook.requests[0].body["alert"]
    labels = {"alertname": "TargetUp", "severity": "warning", "account_id": "ACC1", "instance": f"127.0.0.1:{target.port}",
              "job": "x"}
    assert first["fingerprint"] == fingerprint(labels) and first["details"]["labels"] == labels
    assert (first["type"], first["severity"], first["summary"]) == ("target_up", 2, f"target 127.0.0.1:{target.port} is up")
    assert first["entity"] == {"account_id": "ACC1", "symbol": f"127.0.0.1:{target.port}", "strategy_id": "x",
                               "run_id": None}
    await asyncio.sleep(4.0)  # four re-sends of the firing alert
    assert actions() == ["trigger"]

    await target.stop()  # up == 0 from the next scrape: resolved
    await webhook.wait_for(lambda r: len(r) >= 2, timeout=30)
    await asyncio.sleep(4.0)  # four re-sends of the resolved alert
    assert actions() == ["trigger", "resolve"]
    resolve = webhook.requests[1].body["alert"]
    assert resolve["fingerprint"] == first["fingerprint"] and resolve["resolves"] == first["fingerprint"]

    fp = first["fingerprint"]
    try:
        rows = await until_rows(worker, "SELECT outcome, action, uniqExact(alert_id) FROM tocsin.alerts FINAL "
                                        f"WHERE fingerprint = '{fp}' GROUP BY outcome, action ORDER BY outcome",
                                lambda r: {x[0] for x in r} >= {"notify", "bypass"})
    except AssertionError as exc:
        decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), timeout=3)
        dlq = await read_topic(stack.bootstrap, stack.topic("dlq"), timeout=3)
        raise AssertionError(f"{exc}\ndecisions: {[(d['value']['outcome'], d['value']['decision_id']) for d in decisions]}"
                             f"\ndlq: {dlq}\nworker:\n{worker.log_tail()}") from None
    by = {(o, a): n for o, a, n in rows}
    assert by[("notify", "trigger")] == 1 and by[("bypass", "resolve")] == 1, rows
    assert by.get(("suppress", "trigger"), 0) >= 2, rows  # the re-sends, counted
    assert set(by) <= {("notify", "trigger"), ("bypass", "resolve"), ("suppress", "trigger")}, rows
    sent = await until_rows(worker, "SELECT channel, status, count() FROM tocsin.delivery_attempts FINAL "
                                    f"WHERE fingerprint = '{fp}' AND channel = 'webhook' GROUP BY channel, status",
                            lambda r: sum(x[2] for x in r if x[1] == "sent") == 2)
    assert [x for x in sent if x[1] == "sent"] == [["webhook", "sent", 2]], sent


def alertmanager_config(tmp: Path, worker: WorkerProcess) -> Path:
    config = tmp / "alertmanager.yml"
    config.write_text(yaml.safe_dump({
        "route": {"receiver": "tocsin", "group_by": ["alertname"], "group_wait": "0s", "group_interval": "1s",
                  "repeat_interval": "1h"},
        "receivers": [{"name": "tocsin", "webhook_configs": [{
            "url": f"http://127.0.0.1:{worker.port}/api/ingest/alertmanager", "send_resolved": True,
            "http_config": {"authorization": {"type": "Bearer", "credentials": TOKEN}}}]}],
    }))
    return config


@pytest.fixture
async def alertmanager(tmp_path: Path, worker: WorkerProcess) -> AsyncIterator[str]:
    assert ALERTMANAGER is not None
    port = free_port()
    am = Process([ALERTMANAGER, f"--config.file={alertmanager_config(tmp_path, worker)}",
                  f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
                  f"--storage.path={tmp_path / 'am'}", "--log.level=debug"], tmp_path / "alertmanager.log")
    try:
        await wait_http(f"http://127.0.0.1:{port}/-/ready", am)
        yield f"http://127.0.0.1:{port}"
    finally:
        am.stop()


async def am_post(base: str, alerts: list[dict[str, Any]]) -> None:
    async with aiohttp.ClientSession() as s, s.post(f"{base}/api/v2/alerts", json=alerts) as r:
        assert r.status == 200, await r.text()


async def am_alerts(base: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.get(f"{base}/api/v2/alerts") as r:
        assert r.status == 200
        return list(await r.json())


def iso(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


@needs_alertmanager
async def test_alertmanager_forwards_to_the_webhook_ingest_once(
        worker: WorkerProcess, webhook: HttpReceiver, alertmanager: str) -> None:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=10)
    alert = {"labels": {"alertname": "DiskFull", "severity": "critical", "instance": "db1"},
             "annotations": {"summary": "/ at 97%"}, "startsAt": iso(start),
             "endsAt": iso(start + dt.timedelta(minutes=10)), "generatorURL": "http://prom/x"}
    await am_post(alertmanager, [alert])
    await webhook.wait_for(lambda r: len(r) >= 1, timeout=30)
    got = webhook.requests[0].body["alert"]
    (held,) = await am_alerts(alertmanager)
    assert got["fingerprint"] == held["fingerprint"] == fingerprint(alert["labels"])  # Alertmanager's own
    assert (got["type"], got["severity"], got["summary"], got["source"]) == ("disk_full", 1, "/ at 97%",
                                                                              "alertmanager_webhook")
    for _ in range(3):  # posted again, as Prometheus would: Alertmanager does not notify again, nor Tocsin
        await am_post(alertmanager, [alert])
        await asyncio.sleep(1.0)
    assert len(webhook.requests) == 1
    await am_post(alertmanager, [{**alert, "endsAt": iso(dt.datetime.now(dt.UTC))}])
    await webhook.wait_for(lambda r: len(r) >= 2, timeout=30)
    await asyncio.sleep(2.5)
    assert [r.body["alert"]["action"] for r in webhook.requests] == ["trigger", "resolve"]
    assert webhook.requests[1].body["alert"]["fingerprint"] == got["fingerprint"]


@needs_alertmanager
async def test_the_fingerprint_is_alertmanagers_for_any_labels(tmp_path: Path) -> None:
    """Random label sets posted to a real Alertmanager: each fingerprint it reports is ours."""
    port = free_port()
    config = tmp_path / "am.yml"
    config.write_text(yaml.safe_dump({"route": {"receiver": "none"}, "receivers": [{"name": "none"}]}))
    assert ALERTMANAGER is not None
    am = Process([ALERTMANAGER, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
                  "--cluster.listen-address=", f"--storage.path={tmp_path / 'am'}"], tmp_path / "am.log")
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_http(f"{base}/-/ready", am)
        rnd = random.Random(17)
        name_chars = string.ascii_letters + string.digits + "_"
        value_chars = string.printable + "äöü€日本\u00a0"
        sets = []
        for i in range(40):
            labels = {"alertname": f"A{i}"}
            for _ in range(rnd.randint(0, 6)):
                name = rnd.choice(string.ascii_letters + "_") + "".join(rnd.choices(name_chars, k=rnd.randint(0, 12)))
                labels[name] = "".join(rnd.choices(value_chars, k=rnd.randint(1, 30)))
            sets.append(labels)
        await am_post(base, [{"labels": ls, "startsAt": iso(dt.datetime.now(dt.UTC))} for ls in sets])
        held = {a["labels"]["alertname"]: a["fingerprint"] for a in await am_alerts(base)}
        assert len(held) == len(sets)
        assert {ls["alertname"]: fingerprint(ls) for ls in sets} == held
    finally:
        am.stop()
