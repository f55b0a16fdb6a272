"""The worker's HTTP API against its own description, probed as an attacker would.

One real worker (embedded broker, recording on chdb, both tokens set, a few alerts seeded)
serves ``/api/openapi.json``; schemathesis reads that document from the worker and, for every
operation in it, sends generated requests with the API token: valid ones, and invalid ones
(wrong types, out-of-range values, malformed bodies). No answer may be a server error, and
every answer must be one the document describes: its status code, content type, headers and
body schema. Where an operation declares a token, each successful answer is also re-sent
without a token and with a wrong one, which must be refused. The worker's router and the
document are compared too: every endpoint is described, so every endpoint is probed.

Deterministic: Hypothesis derandomized, no example database, so a failure replays as is.
(schemathesis's own pytest plugin, ``from_fixture``/``parametrize``, breaks on pytest 9.2,
which renamed ``Node._nodeid``: the operations are parametrized here instead.)
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from importlib import resources
from typing import Any

import aiohttp
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tocsin.decisions.routing import default_policy_path
from tocsin.infra.broker import EmbeddedBroker, free_port

from .conftest import base_env
from .harness import Stack, WorkerProcess, produce
from .test_pipeline import alert_bytes, bucket_time

pytestmark = pytest.mark.integration
TOKEN = "openapi-api-token"
#: configured too, as in production: the API token must still open everything
READ_TOKEN = "openapi-read-token"
#: generated requests per operation and mode: the module stays well within a minute and a half
MAX_EXAMPLES = 25

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, ignored_auth]

#: what this test found and was fixed: (operation label) → mark; empty while none is open
FOUND: dict[str, Any] = {}

ALERTS = [
    dict(type="kill_switch_activated", severity=1, summary="kill switch A1", fingerprint="ks:A1", account_id="A1"),
    dict(type="order_rejected", severity=1, summary="rejected BTC", symbol="BTC", strategy_id="s1", account_id="A1"),
    dict(type="position_limit_hit", severity=2, summary="limit ETH", symbol="ETH", strategy_id="s2"),
    dict(type="component_unhealthy", severity=3, summary="redis down", fingerprint="component_unhealthy:redis"),
]


def packaged_document() -> dict[str, Any]:
    return json.loads((resources.files("tocsin.web") / "openapi.json").read_text("utf-8"))


def _cases() -> list[Any]:
    """(operation label, mode) for every operation; invalid requests only where it takes input."""
    out = []
    for path, ops in packaged_document()["paths"].items():
        for method, op in ops.items():
            label = f"{method.upper()} {path}"
            marks = [FOUND[label]] if label in FOUND else []
            out.append(pytest.param(label, GenerationMode.POSITIVE, id=f"{label} valid", marks=marks))
            if op.get("parameters") or op.get("requestBody"):
                out.append(pytest.param(label, GenerationMode.NEGATIVE, id=f"{label} invalid", marks=marks))
    return out


async def _seed(stack: Stack, w: WorkerProcess) -> None:
    """Alerts in the status table and recorded, so the list, stats and SQL answer with rows."""
    await w.wait_ready()
    items = [alert_bytes(event_timestamp=bucket_time(i), **a) for i, a in enumerate(ALERTS)]
    await produce(stack.bootstrap, stack.topic("alerts"), items)
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s:
        while True:
            async with s.get(f"{w.url}/api/alerts") as r:
                if r.status == 200 and (await r.json())["total"] == len(ALERTS):
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"the seeded alerts never showed:\n{w.log_tail()}")
            await asyncio.sleep(0.2)


RECIPIENTS = """
[recipients.alice]
destinations = ["slack:alice", "email:alice"]
quiet_hours = { start = "22:00", end = "07:00" }

[recipients.payments]
kind = "team"
destinations = ["webhook:payments"]
"""


@pytest.fixture(scope="module")
def api_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One worker for the module: every operation is probed on the same one."""
    tmp = tmp_path_factory.mktemp("openapi")
    broker = EmbeddedBroker(f"127.0.0.1:{free_port()}", log_path=tmp / "broker.log").start()
    prefix = "t" + uuid.uuid4().hex[:8]
    stack = Stack(broker.bootstrap, prefix, tmp, base_env(broker.bootstrap, prefix, tmp))
    routing = tmp / "routing.toml"  # the shipped routing and two recipients, so preferences are probed too
    routing.write_text(default_policy_path().read_text("utf-8") + RECIPIENTS, "utf-8")
    try:
        w = stack.worker(TOCSIN_API_TOKEN=TOKEN, TOCSIN_READ_TOKEN=READ_TOKEN, TOCSIN_ROUTING_FILE=str(routing),
                         TOCSIN_RECORD_ENABLED="true", TOCSIN_RECORD_BATCH_S="0.2").start()
        asyncio.run(_seed(stack, w))
        yield w
    finally:
        for w in stack.workers:
            w.stop(timeout=15)
        broker.stop()


@pytest.fixture(scope="module")
def served_schema(api_worker: WorkerProcess) -> Any:
    config = schemathesis.Config.from_dict({
        "base-url": api_worker.url,
        "generation": {"deterministic": True, "database": "none"},
        "auth": {"openapi": {"apiToken": {"bearer": TOKEN}}},
        "request-timeout": 30,
    })
    return schemathesis.openapi.from_url(f"{api_worker.url}/api/openapi.json", config=config)


ROUTES = """
import json
from tocsin.streams.app import build
from tocsin.core.settings import load_settings
rt = build(load_settings())
print(json.dumps(sorted({(r.method, r.resource.canonical) for r in rt.app.web.web_app.router.routes()})))
"""


def test_every_route_is_described_and_every_description_routed(tmp_path: Any) -> None:
    """The worker's own router, as ``tocsin worker`` builds it (in a child process: building
    the app patches aiokafka and Faust), against the document's paths: an endpoint left out of
    the document would be left out of the probing above. (HEAD, which Faust adds to every
    view, is left out.)"""
    env = base_env("127.0.0.1:9", "routes", tmp_path)
    done = subprocess.run([sys.executable, "-c", ROUTES], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-4000:]
    routed = {(method, path) for method, path in json.loads(done.stdout.splitlines()[-1]) if method != "HEAD"}
    described = {(method.upper(), path) for path, ops in packaged_document()["paths"].items() for method in ops}
    assert not routed - described, f"routes missing from tocsin/web/openapi.json: {sorted(routed - described)}"
    assert not described - routed, f"described but not routed: {sorted(described - routed)}"


def test_the_served_document_is_the_packaged_one(api_worker: WorkerProcess, served_schema: Any) -> None:
    async def fetch() -> tuple[int, str, Any]:
        async with aiohttp.ClientSession() as s, s.get(f"{api_worker.url}/api/openapi.json") as r:
            return r.status, r.headers["Content-Type"], await r.json()

    status, ctype, body = asyncio.run(fetch())
    assert (status, ctype) == (200, "application/json")  # open: no token sent
    assert body == packaged_document()
    assert body["openapi"].startswith("3.1")
    served_schema.validate()  # against the OpenAPI 3.1 schema


@pytest.mark.parametrize(("label", "mode"), _cases())
def test_operation_answers_as_described(served_schema: Any, label: str, mode: GenerationMode) -> None:
    operation = served_schema.find_operation_by_label(label)
    assert operation is not None, label

    @settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                     HealthCheck.data_too_large])
    @given(case=operation.as_strategy(mode))
    def probe(case: Any) -> None:
        case.call_and_validate(checks=CHECKS)

    probe()


def test_boundaries_and_every_documented_value(api_worker: WorkerProcess, tmp_path: Any) -> None:
    """schemathesis's own runner, its examples and coverage phases: each documented example and
    enum value, the boundaries of every range and length, required parts left out, the same
    checks (its fuzzing is the test above)."""
    checks = ",".join(c.__name__ for c in CHECKS)
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", f"{api_worker.url}/api/openapi.json",
           "--url", api_worker.url, "--header", f"Authorization: Bearer {TOKEN}",
           "--phases", "examples,coverage", "--checks", checks, "--generation-deterministic",
           "--continue-on-failure", "--workers", "1", "--no-color"]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-12000:] + done.stderr[-2000:]
    # every operation selected (schemathesis leaves out the one serving the document itself)
    assert re.search(r"Operations:\s+(\d+) selected / \1 total", done.stdout) and "Coverage" in done.stdout


MALFORMED_NAMED_QUERIES = [
    pytest.param({"sql": "SELECT 1", "name": [1]}, id="name not a string"),
    pytest.param({"name": "", "params": {}}, id="empty name, no sql"),
    pytest.param({"name": "attempts_of_alert", "params": {"store": 1}}, id="param named like run_query's own"),
    pytest.param({"name": "alerts_filtered", "params": {"since": "9999-12-31T23:59:59-01:00"}},
                 id="time beyond year 9999 in UTC"),
]


@pytest.mark.parametrize("body", MALFORMED_NAMED_QUERIES)
def test_a_malformed_named_query_is_refused(api_worker: WorkerProcess, body: dict[str, Any]) -> None:
    """Found by the fuzzing above: each answered 500 (a TypeError, AttributeError or
    OverflowError escaping the view); now a 400 with the reason."""
    async def post() -> tuple[int, str]:
        async with aiohttp.ClientSession() as s, s.post(
                f"{api_worker.url}/api/sql", json=body, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            return r.status, await r.text()

    status, text = asyncio.run(post())
    assert status == 400, (status, text)
    assert json.loads(text)["error"]
