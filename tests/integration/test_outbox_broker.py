"""Acknowledged before committed, on the real broker: the embedded broker is paused (SIGSTOP)
while a worker sends, for longer than its producer waits for an answer
(TOCSIN_PRODUCER_REQUEST_TIMEOUT_S), then resumed (SIGCONT). Every send that timed out is sent
again (agents/outbox.py) before the offset that caused it is committed: nothing is lost, and
the worker goes on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer
from faust.types import TP

from tocsin.agents import outbox as outbox_module
from tocsin.agents.delivery.outbox import DeliveryOutbox
from tocsin.agents.delivery.reader import Command
from tocsin.agents.outbox import Outbox
from tocsin.agents.reader import Track
from tocsin.core.topics import ensure_topics
from tocsin.infra.broker import EmbeddedBroker
from tocsin.schemas.messages import AttemptStatus

from .harness import HttpReceiver, Received, SmtpReceiver, Stack, WorkerProcess, produce, read_topic
from .test_pipeline import alert_bytes, bucket_time, delivery_env

pytestmark = pytest.mark.integration

#: the producer's wait for the broker: a pause of PAUSE_S outlasts it twice or more
PRODUCER_TIMEOUT_S = 1.5
PAUSE_S = 3.5
TOKEN = "outbox-token"


@contextlib.contextmanager
def paused(broker: EmbeddedBroker) -> Iterator[None]:
    """The broker's process group stopped (it answers nothing, its sockets stay open)."""
    assert broker.proc is not None
    group = os.getpgid(broker.proc.pid)
    os.killpg(group, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(group, signal.SIGCONT)


async def metric(worker: WorkerProcess, name: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(worker.url + "/metrics") as r:
        text = await r.text()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")
               or line.startswith(name + "{"))


async def eventually(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.1)


ROUTING = """
always = ["console:default"]
[severity]
1 = ["webhook:default"]
2 = ["webhook:default"]
3 = []
[receivers.default]
max_attempts = 2
backoff_s = [9.0]
[receivers."webhook:default"]
failover = ["email:default"]
"""

DEAD, RETRIED = 12, 3
#: the first answers to retry:* and even dead:* come after FAST_S, to odd dead:* after SLOW_S:
#: the first records' request times out (and aiokafka drops the connection) while the broker
#: is stopped; the later records find no connection, and expire unsent in the producer
FAST_S, SLOW_S = 0.7, 3.0
FIRST_PAUSE_S = 5.5


async def test_a_paused_broker_loses_no_retry_dead_letter_failover_or_failure_alert(
        broker: EmbeddedBroker, stack: Stack, webhook: HttpReceiver, smtp: SmtpReceiver) -> None:
    # dead:*  -> 400, permanent: P.dlq, the failover to email, and (SEV1) an alert_delivery_failed
    # retry:* -> 500 once (a retry through P.deliveries.retry, due 9 s +/- 20 % later), then 200
    async def script(req: Received, n: int) -> Any:
        fp = req.body["alert"]["fingerprint"]
        first = sum(r.body["alert"]["fingerprint"] == fp for r in webhook.requests) == 1
        if first and fp.split(":")[0] in ("dead", "retry"):
            await asyncio.sleep(SLOW_S if fp.startswith("dead:") and int(fp.split(":")[1]) % 2 else FAST_S)
        if fp.startswith("dead:"):
            return 400
        if fp.startswith("retry:"):
            return 500 if first else 200
        return 200

    webhook.script = script
    routing = stack.tmp / "routing.toml"
    routing.write_text(ROUTING)
    # a longer session: the pauses are not about the group's membership
    worker = await stack.start_worker(**delivery_env(webhook, smtp), TOCSIN_ROUTING_FILE=str(routing),
                                      TOCSIN_PRODUCER_REQUEST_TIMEOUT_S=str(PRODUCER_TIMEOUT_S),
                                      TOCSIN_BROKER_SESSION_TIMEOUT_S="15", TOCSIN_BROKER_REBALANCE_TIMEOUT_S="15")
    items = [alert_bytes(type="db_write_fail", severity=1 if i < 2 else 2, summary=f"dead {i}",
                         fingerprint=f"dead:{i}", event_timestamp=bucket_time()) for i in range(DEAD)]
    items += [alert_bytes(type="db_write_fail", severity=2, summary=f"retry {i}", fingerprint=f"retry:{i}",
                          event_timestamp=bucket_time()) for i in range(RETRIED)]
    await produce(stack.bootstrap, stack.topic("alerts"), items)
    await webhook.wait_for(lambda r: len(r) >= DEAD + RETRIED, timeout=30)

    # pause 1: every first answer comes while the broker is stopped: the attempts, DLQ entries,
    # failovers, failure alerts and retries they make are all sent during it, and time out
    t0 = time.monotonic()
    with paused(broker):
        await asyncio.sleep(FIRST_PAUSE_S)
    assert await metric(worker, "tocsin_outbox_resent_total") > 0  # the sends did time out, and went again

    # pause 2: the retry agent holds the three retries, due 7.9-11.5 s after t0, and
    # re-publishes them while the broker is stopped again, until 12 s or later
    async def retries_held() -> bool:  # or more: a retry whose send timed out may be there twice
        return await metric(worker, "tocsin_retries_pending") >= RETRIED

    await eventually(retries_held, FAST_S + 7.2 - (time.monotonic() - t0), "the retries read by the retry agent")
    with paused(broker):
        await asyncio.sleep(max(2.0, 12.0 - (time.monotonic() - t0)))

    # nothing lost: every failover mail, every retried delivery
    await smtp.wait_for(DEAD, timeout=30)
    await webhook.wait_for(lambda r: sum(x.body["alert"]["fingerprint"].startswith("retry:") for x in r)
                           >= 2 * RETRIED, timeout=30)
    dlq = await read_topic(stack.bootstrap, stack.topic("dlq"), timeout=20,
                           until=lambda ms: len({m["value"]["alert"]["fingerprint"] for m in ms}) >= DEAD)
    assert {m["value"]["alert"]["fingerprint"] for m in dlq} == {f"dead:{i}" for i in range(DEAD)}
    assert {m["Subject"] for m in smtp.messages} >= {f"[SEV2] dead {i}" for i in range(2, DEAD)}
    retries = await read_topic(stack.bootstrap, stack.topic("deliveries.retry"), min_count=RETRIED)
    assert {m["value"]["alert"]["fingerprint"] for m in retries} == {f"retry:{i}" for i in range(RETRIED)}
    assert all(m["value"]["attempt"] == 2 for m in retries)
    alerts = await read_topic(stack.bootstrap, stack.topic("alerts"), timeout=20,
                              until=lambda ms: sum(m["value"]["type"] == "alert_delivery_failed" for m in ms) >= 2)
    failed = [m["value"] for m in alerts if m["value"]["type"] == "alert_delivery_failed"]
    assert {a["details"]["fingerprint"] for a in failed} == {"dead:0", "dead:1"}

    def done(ms: list[dict[str, Any]]) -> bool:
        by_fp: dict[str, set[str]] = {}
        for m in ms:
            v = m["value"]
            by_fp.setdefault(v["fingerprint"], set()).add(v["status"])
        return (all("dead" in by_fp.get(f"dead:{i}", ()) for i in range(DEAD))
                and all({"failed", "sent"} <= by_fp.get(f"retry:{i}", set()) for i in range(RETRIED)))

    attempts = await read_topic(stack.bootstrap, stack.topic("attempts"), timeout=20, until=done)
    assert done(attempts), "an attempt record is missing"

    # and the worker goes on
    health = await worker.wait_ready(timeout=20)
    assert health["ready"]
    await produce(stack.bootstrap, stack.topic("alerts"),
                  [alert_bytes(type="db_write_fail", severity=2, summary="after", fingerprint="after:1",
                               event_timestamp=bucket_time())])
    await webhook.wait_for(lambda r: any(x.body["alert"]["fingerprint"] == "after:1" for x in r), timeout=20)


@pytest.fixture
async def api_worker(stack: Stack) -> WorkerProcess:
    return await stack.start_worker(TOCSIN_API_TOKEN=TOKEN, TOCSIN_API_ACK_TIMEOUT_S="5",
                                    TOCSIN_PRODUCER_REQUEST_TIMEOUT_S=str(PRODUCER_TIMEOUT_S))


async def test_the_lifecycle_api_answers_202_only_once_the_broker_has_the_event(
        broker: EmbeddedBroker, stack: Stack, api_worker: WorkerProcess) -> None:
    await produce(stack.bootstrap, stack.topic("alerts"),
                  [alert_bytes(type="db_write_fail", severity=3, summary="disk", fingerprint="disk:1",
                               event_timestamp=bucket_time())])
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    base = api_worker.url
    async with aiohttp.ClientSession(headers=headers) as s:
        async def listed() -> bool:
            async with s.get(f"{base}/api/alerts") as r:
                return r.status == 200 and any(a["fingerprint"] == "disk:1" for a in (await r.json())["items"])

        await eventually(listed, 30, "the alert in the status table")

        async def post(action: str) -> tuple[int, dict[str, Any], float]:
            t = time.monotonic()
            async with s.post(f"{base}/api/alerts/disk:1/{action}", json={"by": "sre"}) as r:
                return r.status, await r.json(content_type=None), time.monotonic() - t

        # the broker does not answer within TOCSIN_API_ACK_TIMEOUT_S: 503, never 202
        with paused(broker):
            status, body, took = await asyncio.wait_for(post("acknowledge"), 10)
        assert status == 503, body
        assert 4.5 <= took < 6 and "did not acknowledge" in body["error"]

        # the broker answers late but in time: the answer waits for it
        with paused(broker):
            answer = asyncio.ensure_future(post("resolve"))
            await asyncio.sleep(2.5)  # over one producer timeout: sent, timed out, sent again
            assert not answer.done()
        status, body, took = await asyncio.wait_for(answer, 10)
        assert status == 202, body
        assert took >= 2.5  # not before the broker was back
    events = await read_topic(stack.bootstrap, stack.topic("lifecycle"), timeout=20,
                              until=lambda ms: any(m["value"]["event_id"] == body["event_id"] for m in ms))
    resolved = [m["value"] for m in events if m["value"]["event_id"] == body["event_id"]]
    assert resolved and resolved[0]["action"] == "resolve" and resolved[0]["by"] == "sre"
    async with aiohttp.ClientSession(headers=headers) as s:
        async def folded() -> bool:
            async with s.get(f"{base}/api/alerts?status=resolved") as r:
                return r.status == 200 and any(a["fingerprint"] == "disk:1" for a in (await r.json())["items"])

        await eventually(folded, 30, "the resolve folded into the status table")


def delivery_runtime(prefix: str, producer: AIOKafkaProducer) -> Any:
    """What the delivery outbox uses of a worker's Runtime, on a real producer."""
    from faust.stores.memory import Store as MemoryStore

    class Memory(MemoryStore):
        def __init__(self) -> None:
            self.data: dict[Any, Any] = {}

    def named(name: str) -> Any:
        return SimpleNamespace(get_topic_name=lambda: name)

    table = SimpleNamespace(data=Memory(), changelog_topic=named(f"{prefix}.attempts"))
    return SimpleNamespace(topics=SimpleNamespace(attempts=named(f"{prefix}.attempts"), dlq=named(f"{prefix}.dlq")),
                           tables=SimpleNamespace(deliveries=table),
                           outbox=Outbox(lambda: producer))


async def test_a_send_the_broker_did_not_acknowledge_leaves_its_command_uncommitted(
        broker: EmbeddedBroker, tmp_path: Path) -> None:
    """The delivery agents' path: commands handled while the broker is stopped stay
    unacknowledged in their partition's Track (the offsets the reader commits) until the
    broker acknowledged their records, sent again after the producer gave up on them."""
    prefix = "o" + uuid.uuid4().hex[:8]
    await ensure_topics(broker.bootstrap, prefix, 2)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=1,
                                request_timeout_ms=int(PRODUCER_TIMEOUT_S * 1000))
    await producer.start()
    try:
        rt = delivery_runtime(prefix, producer)
        box = DeliveryOutbox(rt)
        await rt.outbox.send(f"{prefix}.dlq", "warm-up", b"{}")  # metadata known before the pause
        track, tp = Track(), TP(f"{prefix}.deliveries.webhook", 0)
        commands = [Command(SimpleNamespace(value=b"{}", key=f"d{i}".encode(), offset=10 + i), tp, track)
                    for i in range(3)]
        resent = outbox_module.resent_total._value.get()
        with paused(broker):
            for i, cmd in enumerate(commands):
                box.attempt({"delivery_id": f"d{i}", "channel": "webhook", "status": AttemptStatus.DEAD})
                box.publish(f"{prefix}.dlq", f"d{i}", {"delivery_id": f"d{i}", "last_error": "HTTP 400"})
                box.ack_after(cmd)
            await asyncio.sleep(2 * PRODUCER_TIMEOUT_S + 1)
            assert outbox_module.resent_total._value.get() > resent  # the producer gave up; sent again
            assert track.committable() == 10 and track.in_flight() == 3  # nothing committable
        deadline = time.monotonic() + 20
        while track.committable() != 13 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert track.committable() == 13 and track.in_flight() == 0
    finally:
        await producer.stop()
    dlq = await read_topic(broker.bootstrap, f"{prefix}.dlq", min_count=4, timeout=10)
    assert {m["key"] for m in dlq} >= {"d0", "d1", "d2"}  # at least once: a timed-out send may be there twice
    attempts = await read_topic(broker.bootstrap, f"{prefix}.attempts", min_count=3, timeout=10)
    assert {m["key"] for m in attempts} >= {"d0", "d1", "d2"}

