"""Retries that outlast outages, rate limits that schedule (issue #15, parts 2 and 3), on a real
worker, the real broker and aiohttp/aiosmtpd receivers on 127.0.0.1.

- a webhook answering 503 for 60 s: every alert sent meanwhile reaches it once it answers
  (those on the slow tier released when the breaker closes), none dead-lettered, none twice; /metrics shows its breaker open, then closed, and the
  deferrals counted;
- a burst of 1,000 to a 50/s destination: 1,000 sends, at most 1,000 deferrals, at the rate,
  SEV1 first;
- a SEV1 meeting an open breaker fails over to email at once, and the original is still
  delivered to the webhook when it is back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from tocsin.schemas import DeliveryCommand, create_alert, delivery_id_for, dumps

from .harness import HttpReceiver, Received, SmtpReceiver, Stack, WorkerProcess, produce, read_topic
from .test_pipeline import alert_bytes, bucket_time, delivery_env

pytestmark = pytest.mark.integration


def routing_file(tmp: Path, text: str) -> str:
    p = tmp / "routing.toml"
    p.write_text(text)
    return str(p)


async def scrape(w: WorkerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as s, s.get(f"{w.url}/metrics") as r:
        text = await r.text()
    out = {}
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            out[(smp.name, tuple(sorted(smp.labels.items())))] = smp.value
    return out


def breaker_state(m: dict[tuple[str, tuple[tuple[str, str], ...]], float], destination: str) -> float | None:
    return m.get(("tocsin_circuit_breaker_state", (("destination", destination),)))


def deferred(m: dict[tuple[str, tuple[tuple[str, str], ...]], float], channel: str, reason: str) -> float:
    return m.get(("tocsin_deliveries_deferred_total", (("channel", channel), ("reason", reason))), 0.0)


class Replies:
    """The webhook's script, remembering what each request was answered."""

    def __init__(self, webhook: HttpReceiver, decide: Callable[[Received, int], int]) -> None:
        self.log: list[tuple[Received, int]] = []
        self.decide = decide
        webhook.script = self

    def __call__(self, req: Received, n: int) -> int:
        status = self.decide(req, n)
        self.log.append((req, status))
        return status

    def answered(self, status: int = 200) -> list[Received]:
        return [r for r, s in self.log if s == status]


OUTAGE_ROUTING = """
always = []
[severity]
1 = ["webhook:default"]
2 = ["webhook:default"]
3 = []
[receivers."webhook:default"]
backoff_s = [1]
slow_backoff_s = [600, 600]
breaker_reset_s = 10
breaker_max_reset_s = 10
"""


async def test_a_60_s_outage_loses_nothing_and_metrics_show_the_breaker(
        stack: Stack, webhook: HttpReceiver, smtp: SmtpReceiver) -> None:
    """The finding: 503 for 20 s, then 200; of 40 alerts sent in those 20 s, 0 reached the
    webhook in the next 150 s. Here 503 for 60 s, 40 alerts sent during it; a probe every 10 s
    and a slow tier of 10 minutes: a command whose probe failed waits on the slow tier, and is
    delivered when the endpoint answers again (the breaker's close releases it), not 10 minutes
    later."""
    w = await stack.start_worker(**delivery_env(webhook, smtp),
                                 TOCSIN_ROUTING_FILE=routing_file(stack.tmp, OUTAGE_ROUTING))
    before = await scrape(w)
    assert breaker_state(before, "webhook:default") == 0  # on /metrics from the start, closed
    start = time.monotonic()
    outage_s = 60.0
    replies = Replies(webhook, lambda req, n: 503 if time.monotonic() - start < outage_s else 200)

    states: list[tuple[float, float | None]] = []

    async def watch() -> None:
        while True:
            states.append((time.monotonic() - start, breaker_state(await scrape(w), "webhook:default")))
            await asyncio.sleep(0.5)

    watcher = asyncio.ensure_future(watch())
    n = 40
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, linger_ms=0)
    await producer.start()
    try:
        for i in range(n):  # one every 1.4 s, all inside the outage
            key, value = alert_bytes(type="db_write_fail", severity=2, summary=f"db {i}", fingerprint=f"outage:{i}",
                                     event_timestamp=bucket_time(i))
            await (await producer.send(stack.topic("alerts"), value=value, key=key))
            await asyncio.sleep(1.4)
        assert time.monotonic() - start < outage_s
        await webhook.wait_for(lambda r: len({x.body["delivery_id"] for x in replies.answered()}) >= n, timeout=60)
        delivered_at = time.monotonic() - start
        await asyncio.sleep(3.0)  # nothing more may come
    finally:
        watcher.cancel()
        await producer.stop()
    reqs = webhook.requests
    ok = replies.answered()
    ids = [r.body["delivery_id"] for r in ok]
    assert len(set(ids)) == n and len(ids) == n  # each alert once, none twice
    assert {r.body["alert"]["fingerprint"] for r in ok} == {f"outage:{i}" for i in range(n)}
    refused = replies.answered(503)
    print(f"\n60 s outage: {len(refused)} POSTs answered 503, all {n} delivered {delivered_at:.1f}s after it began")
    # at the breaker's first probe after the endpoint is back (every 10 s), not later
    assert delivered_at < outage_s + 10 + 5
    # the open breaker spared the endpoint: the failures that opened it, then a probe each 10 s
    assert len(refused) <= 5 + outage_s / 10 + 2
    dlq = await read_topic(stack.bootstrap, stack.topic("dlq"), timeout=3)
    assert dlq == []  # none dead-lettered
    retried = await read_topic(stack.bootstrap, stack.topic("deliveries.retry"), timeout=3)
    slow = [m["value"] for m in retried if m["value"].get("waiting_for") == "retry"
            and dt.datetime.fromisoformat(m["value"]["not_before"]) - dt.datetime.fromisoformat(m["value"]["created_at"])
            > dt.timedelta(seconds=500)]
    assert slow, "no command reached the slow tier: the release on close was not exercised"
    attempts = await read_topic(stack.bootstrap, stack.topic("attempts"),
                                until=lambda ms: sum(m["value"]["status"] == "sent" for m in ms) >= n)
    by_status: dict[str, list[dict[str, Any]]] = {}
    for a in attempts:
        by_status.setdefault(a["value"]["status"], []).append(a["value"])
    assert "dead" not in by_status
    assert len(by_status.get("circuit_open", [])) >= n - 5  # they waited for the breaker
    # an attempt is a contact: a delivery's attempt number is the POSTs it made
    posts: dict[str, int] = {}
    for r in reqs:
        posts[r.body["delivery_id"]] = posts.get(r.body["delivery_id"], 0) + 1
    assert all(a["attempt"] == posts[a["delivery_id"]] for a in by_status["sent"])
    assert {a["delivery_id"] for a in slow} <= {a["delivery_id"] for a in by_status["sent"]}
    # /metrics: the breaker went open during the outage and is closed again; the deferrals counted
    seen = [s for _, s in states]
    assert 2 in seen, states
    after = await scrape(w)
    assert breaker_state(after, "webhook:default") == 0
    assert deferred(after, "webhook", "circuit_open") == len(by_status["circuit_open"])
    assert deferred(after, "webhook", "circuit_open") > deferred(before, "webhook", "circuit_open")


def webhook_command(i: int, severity: int, now: dt.datetime) -> tuple[bytes, bytes]:
    a = create_alert(type="storage_threshold", severity=severity, summary=f"s{severity} {i}",
                     fingerprint=f"burst:{i}", event_timestamp=now)
    key = f"{a.fingerprint}:0"
    did = delivery_id_for(key, "webhook:default", "webhook:default")
    cmd = DeliveryCommand(delivery_id=did, alert=a, dedupe_key=key, receiver="webhook:default",
                          destination="webhook:default")
    return did.encode(), dumps(cmd)


async def test_a_burst_of_1000_to_a_50_per_s_destination(stack: Stack, webhook: HttpReceiver) -> None:
    """1,000 commands at once, one in 20 a SEV1 (the last ones among them after 475 others have
    their slots): sent once each, at most 1,000 deferrals (not ~N²/2), at 50/s, SEV1 first."""
    rate = 50
    routing = routing_file(stack.tmp, f"""
always = []
[severity]
1 = ["webhook:default"]
[receivers."webhook:default"]
rate_per_s = {rate}
burst = {rate}
""")
    w = await stack.start_worker(TOCSIN_WEBHOOK_DEFAULT_URL=webhook.url, TOCSIN_ROUTING_FILE=routing)
    n = 1000
    now = dt.datetime.now(dt.UTC)
    urgent = {i for i in range(n) if i % 20 == 19}
    started = time.time()
    await produce(stack.bootstrap, stack.topic("deliveries.webhook"),
                  [webhook_command(i, 1 if i in urgent else 3, now) for i in range(n)])
    reqs = await webhook.wait_for(lambda r: len(r) >= n, timeout=90)
    await asyncio.sleep(2.0)
    reqs = webhook.requests
    ids = [r.body["delivery_id"] for r in reqs]
    assert len(ids) == n and len(set(ids)) == n  # N sends, each once
    attempts = await read_topic(stack.bootstrap, stack.topic("attempts"),
                                until=lambda ms: sum(m["value"]["status"] == "sent" for m in ms) >= n)
    statuses = [a["value"]["status"] for a in attempts]
    limited = statuses.count("rate_limited")
    times = sorted(r.at for r in reqs)
    span = times[-1] - times[0]

    def busiest(secs: float) -> int:  # the most sends in any ``secs`` seconds
        return max(sum(1 for t in times[i:i + int(3 * rate * secs) + rate] if t - times[i] < secs)
                   for i in range(len(times)))

    sev1_positions = [i for i, r in enumerate(sorted(reqs, key=lambda r: r.at)) if r.body["alert"]["severity"] == 1]
    print(f"\nburst of {n} at {rate}/s: {limited} deferrals, drained in {span:.1f}s "
          f"(first POST {times[0] - started:.2f}s after produce), busiest second {busiest(1.0)}, "
          f"last SEV1 at position {max(sev1_positions)}")
    assert statuses.count("sent") == n
    assert 0 < limited <= n  # N deferrals at most, not N²/2
    assert all(a["value"]["attempt"] == 1 for a in attempts)  # a deferral spends no attempt
    assert span >= (n - rate) / rate * 0.9  # drained at the rate ...
    for secs in (1.0, 5.0):  # ... never faster than the bucket allows: the burst, then the rate (and
        assert busiest(secs) <= rate + secs * rate + 5  # a few for the retry topic's jitter, a SEV1 placed)
    assert len(sev1_positions) == len(urgent)
    assert max(sev1_positions) < 200  # SEV1 first: all 50 among the first 200, not spread over 1,000
    m = await scrape(w)
    assert deferred(m, "webhook", "rate_limited") == limited


async def test_a_burst_of_1000_to_a_1_per_s_destination(stack: Stack, webhook: HttpReceiver) -> None:
    """1,000 commands at once to a destination that takes one a second: draining takes 1,000 s,
    so this watches 12 s of it and checks that every command has its own slot meanwhile. The
    burst (3) goes at once, then one a second; the 997 others are each deferred once, to their
    own slots one second apart, the SEV1s' the first, and none is deferred again but the one each
    SEV1 displaced, once more (the finding: N²/2 deferrals, each command asking again every
    second)."""
    rate, burst_, n = 1, 3, 1000
    routing = routing_file(stack.tmp, f"""
always = []
[severity]
1 = ["webhook:default"]
[receivers."webhook:default"]
rate_per_s = {rate}
burst = {burst_}
max_age_s = 7200
""")
    w = await stack.start_worker(TOCSIN_WEBHOOK_DEFAULT_URL=webhook.url, TOCSIN_ROUTING_FILE=routing)
    now = dt.datetime.now(dt.UTC)
    urgent = {i for i in range(n) if i % 100 == 99}  # ten SEV1s, the last after 990 others
    await produce(stack.bootstrap, stack.topic("deliveries.webhook"),
                  [webhook_command(i, 1 if i in urgent else 3, now) for i in range(n)])
    attempts = await read_topic(stack.bootstrap, stack.topic("attempts"), timeout=60,
                                until=lambda ms: sum(m["value"]["status"] == "rate_limited" for m in ms) >= n - burst_)
    first = min(r.at for r in webhook.requests)
    await asyncio.sleep(max(0.0, first + 12.0 - time.time()))
    sent = sorted(webhook.requests, key=lambda r: r.at)
    watched = sent[-1].at - sent[0].at
    attempts = await read_topic(stack.bootstrap, stack.topic("attempts"), timeout=5, settle=1.0)
    limited = [a["value"] for a in attempts if a["value"]["status"] == "rate_limited"]
    deferred_ids = [a["delivery_id"] for a in limited]
    sent_ids = [r.body["delivery_id"] for r in sent]
    print(f"\nburst of {n} at {rate}/s: {len(sent)} sent in the first {watched:.1f}s, {len(limited)} deferrals")
    assert len(set(sent_ids)) == len(sent_ids)  # none twice
    assert len(sent) <= burst_ + watched * rate + 1  # the burst, then the rate
    assert len(sent) >= burst_ + 8  # and it drains
    # each deferred once; a SEV1 takes the slot of one reserved command, deferred once more
    assert len(set(deferred_ids)) == n - burst_ and len(deferred_ids) <= n - burst_ + len(urgent)
    # nothing lost: each command was sent or holds a slot of its own on the retry topic
    retried = await read_topic(stack.bootstrap, stack.topic("deliveries.retry"), timeout=5, settle=1.0)
    slots = {m["value"]["delivery_id"]: dt.datetime.fromisoformat(m["value"]["not_before"]).timestamp()
             for m in retried if m["value"].get("waiting_for") == "rate_limited"}
    every = {webhook_command(i, 3, now)[0].decode() for i in range(n)}
    assert set(sent_ids) | set(slots) == every
    ordered = sorted(slots.values())
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    assert min(gaps) >= 0.75 and ordered[-1] - ordered[0] >= (n - burst_ - 1) * 0.95  # a second apart
    by_slot = sorted(slots, key=slots.__getitem__)
    urgent_ids = {webhook_command(i, 1, now)[0].decode() for i in urgent}
    pending_urgent = [by_slot.index(d) for d in urgent_ids if d in slots]
    assert all(p < len(urgent) for p in pending_urgent)  # SEV1s hold the first slots
    m = await scrape(w)
    assert deferred(m, "webhook", "rate_limited") == len(limited)
    assert breaker_state(m, "webhook:default") == 0  # healthy: nothing failed


async def test_a_sev1_fails_over_at_once_while_the_original_keeps_trying(
        stack: Stack, webhook: HttpReceiver, smtp: SmtpReceiver) -> None:
    """Two SEV2s fail and open the webhook's breaker; a SEV1 then meets it open: the page goes
    out by email at once, and the SEV1 itself (and the SEV2s, not failed over) reach the webhook
    when it answers again; no DLQ entry, no alert_delivery_failed."""
    routing = routing_file(stack.tmp, """
always = []
[severity]
1 = ["webhook:default"]
2 = ["webhook:default"]
[receivers."webhook:default"]
failover = ["email:default"]
breaker_failures = 2
breaker_reset_s = 3
""")
    await stack.start_worker(**delivery_env(webhook, smtp), TOCSIN_ROUTING_FILE=routing)
    start = time.monotonic()
    down_s = 10.0
    replies = Replies(webhook, lambda req, n: 503 if time.monotonic() - start < down_s else 200)
    await produce(stack.bootstrap, stack.topic("alerts"), [
        alert_bytes(type="db_write_fail", severity=2, summary=f"db {i}", fingerprint=f"fo:{i}",
                    event_timestamp=bucket_time(i)) for i in range(2)])
    await webhook.wait_for(lambda r: len(r) >= 2, timeout=30)
    await asyncio.sleep(0.5)  # both answered 503: the breaker is open
    sev1_at = time.monotonic()
    await produce(stack.bootstrap, stack.topic("alerts"), [
        alert_bytes(type="kill_switch_activated", severity=1, summary="kill switch on", fingerprint="fo:sev1",
                    event_timestamp=bucket_time(5))])
    mails = await smtp.wait_for(1, timeout=10)
    mailed_after = time.monotonic() - sev1_at
    assert mails[0]["Subject"] == "[SEV1] kill switch on"
    assert time.monotonic() - start < down_s  # while the webhook was still down
    await webhook.wait_for(
        lambda r: {x.body["alert"]["fingerprint"] for x in replies.answered()} >= {"fo:0", "fo:1", "fo:sev1"},
        timeout=60)
    await asyncio.sleep(2.0)
    print(f"\nSEV1 paged by email {mailed_after:.2f}s after produce; webhook back after {down_s:.0f}s")
    assert mailed_after < 5.0
    assert len(smtp.messages) == 1  # failed over once; the SEV2s were not
    ok = replies.answered()
    assert sorted(r.body["alert"]["fingerprint"] for r in ok) == ["fo:0", "fo:1", "fo:sev1"]  # each once
    sev1_hook = next(r for r in ok if r.body["alert"]["fingerprint"] == "fo:sev1")
    attempts = await read_topic(stack.bootstrap, stack.topic("attempts"),
                                until=lambda ms: sum(m["value"]["status"] == "sent" for m in ms) >= 4)
    sent = {(a["value"]["channel"], a["value"]["delivery_id"]) for a in attempts if a["value"]["status"] == "sent"}
    # the original's own delivery is recorded; the failover is a delivery of its own
    assert ("webhook", sev1_hook.body["delivery_id"]) in sent
    assert any(ch == "email" and did != sev1_hook.body["delivery_id"] for ch, did in sent)
    assert not any(a["value"]["status"] == "dead" for a in attempts)
    assert await read_topic(stack.bootstrap, stack.topic("dlq"), timeout=3) == []
    decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=3, timeout=10)
    assert not any(d["value"]["alert"]["type"] == "alert_delivery_failed" for d in decisions)


async def test_past_max_age_s_a_delivery_is_dead_as_expired(stack: Stack, webhook: HttpReceiver,
                                                            smtp: SmtpReceiver) -> None:
    """A receiver's deadline (max_age_s, here 4 s): retried until then, never scheduled past it,
    then dead with the reason ``expired`` on the DLQ, and failed over."""
    routing = routing_file(stack.tmp, """
always = []
[severity]
2 = ["webhook:default"]
[receivers."webhook:default"]
backoff_s = [1]
slow_backoff_s = []
max_attempts = 100
max_age_s = 4
breaker_failures = 1000
failover = ["email:default"]
""")
    replies = Replies(webhook, lambda req, n: 503)
    await stack.start_worker(**delivery_env(webhook, smtp), TOCSIN_ROUTING_FILE=routing)
    produced = time.monotonic()
    await produce(stack.bootstrap, stack.topic("alerts"), [
        alert_bytes(type="db_write_fail", severity=2, summary="db gone", fingerprint="expire:1",
                    event_timestamp=bucket_time())])
    dlq = await read_topic(stack.bootstrap, stack.topic("dlq"), min_count=1, timeout=30)
    dead_after = time.monotonic() - produced
    mails = await smtp.wait_for(1, timeout=15)
    assert dlq[0]["value"]["last_error"].startswith("expired: not delivered within max_age_s=4")
    assert "HTTP 503" in dlq[0]["value"]["last_error"]  # and what went wrong last
    assert mails[0]["Subject"] == "[SEV2] db gone"
    attempts = await read_topic(stack.bootstrap, stack.topic("attempts"),
                                until=lambda ms: any(m["value"]["status"] == "dead" for m in ms))
    hook = [a["value"] for a in attempts if a["value"]["channel"] == "webhook"]
    dead = [a for a in hook if a["status"] == "dead"]
    assert len(dead) == 1 and dead[0]["reason"] == "expired"
    posts = len(replies.log)
    print(f"\nexpired after {dead_after:.1f}s and {posts} POSTs")
    assert 3 <= posts <= 6  # about one a second until the deadline, none after it
    assert dead_after < 4 + 5
