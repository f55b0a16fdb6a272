"""Reliable delivery on the real broker with a scripted HTTP receiver and aiosmtpd."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tocsin.schemas import DeliveryCommand, create_alert, delivery_id_for, dumps

from .harness import HttpReceiver, SmtpReceiver, Stack, produce, read_topic
from .test_pipeline import alert_bytes, bucket_time, delivery_env

pytestmark = pytest.mark.integration

FAST_ROUTING = """
always = ["console:default"]
[severity]
1 = ["webhook:default"]
2 = ["webhook:default"]
3 = []
[receivers.default]
max_attempts = 4
backoff_s = [0.2, 0.4, 0.8]
breaker_reset_s = 1
breaker_max_reset_s = 2
[receivers."webhook:default"]
failover = ["email:default"]
"""


def routing_file(tmp: Path, text: str = FAST_ROUTING) -> str:
    p = tmp / "routing.toml"
    p.write_text(text)
    return str(p)


def attempts_of(msgs: list[dict], channel: str | None = None) -> list[dict]:
    out = [m["value"] for m in msgs if channel is None or m["value"]["channel"] == channel]
    return sorted(out, key=lambda a: (a["delivery_id"], a["attempt"], a["started_at"]))


async def test_two_500s_then_200_gives_three_attempts_with_rising_delays(
        stack: Stack, webhook: HttpReceiver, smtp: SmtpReceiver) -> None:
    webhook.script = lambda req, n: 500 if n <= 2 else 200
    await stack.start_worker(**delivery_env(webhook, smtp))  # the default schedule: 1 s, 2 s, ...
    await produce(stack.bootstrap, stack.topic("alerts"),
                  [alert_bytes(type="db_write_fail", severity=2, summary="db down", fingerprint="db:1",
                               event_timestamp=bucket_time())])
    reqs = await webhook.wait_for(lambda r: len(r) >= 3, timeout=30)
    msgs = await read_topic(stack.bootstrap, stack.topic("attempts"),
                            until=lambda ms: any(m["value"]["status"] == "sent" and m["value"]["channel"] == "webhook" for m in ms))
    hook = attempts_of(msgs, "webhook")
    assert [a["status"] for a in hook] == ["failed", "failed", "sent"]
    assert [a["response_code"] for a in hook] == [500, 500, 200]
    assert len({r.headers["Idempotency-Key"] for r in reqs}) == 1
    gap1 = reqs[1].at - reqs[0].at
    gap2 = reqs[2].at - reqs[1].at
    assert 0.7 <= gap1 < gap2  # 1 s ±20 %, then 2 s ±20 %
    assert gap2 >= 1.5


async def test_400_is_permanent_dead_lettered_and_failed_over_to_email(
        stack: Stack, webhook: HttpReceiver, smtp: SmtpReceiver) -> None:
    webhook.script = lambda req, n: 400
    await stack.start_worker(**delivery_env(webhook, smtp), TOCSIN_ROUTING_FILE=routing_file(stack.tmp))
    await produce(stack.bootstrap, stack.topic("alerts"),
                  [alert_bytes(type="order_failed_permanently", severity=2, summary="order lost",
                               fingerprint="order:9", event_timestamp=bucket_time())])
    mails = await smtp.wait_for(1)
    dlq = await read_topic(stack.bootstrap, stack.topic("dlq"), min_count=1)
    await asyncio.sleep(1.0)
    assert len(webhook.requests) == 1
    assert dlq[0]["value"]["destination"] == "webhook:default"
    assert "HTTP 400" in dlq[0]["value"]["last_error"]
    assert mails[0]["Subject"] == "[SEV2] order lost"
    msgs = await read_topic(stack.bootstrap, stack.topic("attempts"), min_count=2)
    statuses = {(a["channel"], a["status"]) for a in attempts_of(msgs)}
    assert ("webhook", "dead") in statuses and ("email", "sent") in statuses


async def test_429_retry_after_is_honoured(stack: Stack, webhook: HttpReceiver, smtp: SmtpReceiver) -> None:
    def script(req, n):
        if n == 1:
            return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": "2"})
        return 200
    webhook.script = script
    await stack.start_worker(**delivery_env(webhook, smtp), TOCSIN_ROUTING_FILE=routing_file(stack.tmp))
    await produce(stack.bootstrap, stack.topic("alerts"),
                  [alert_bytes(type="db_write_fail", severity=2, summary="db", fingerprint="db:429",
                               event_timestamp=bucket_time())])
    reqs = await webhook.wait_for(lambda r: len(r) >= 2, timeout=20)
    assert reqs[1].at - reqs[0].at >= 2.0  # the backoff alone would be 0.2 s


async def test_endpoint_down_for_the_whole_schedule(stack: Stack, webhook: HttpReceiver,
                                                     smtp: SmtpReceiver) -> None:
    webhook.script = lambda req, n: 503
    await stack.start_worker(**delivery_env(webhook, smtp), TOCSIN_ROUTING_FILE=routing_file(stack.tmp))
    await produce(stack.bootstrap, stack.topic("alerts"),
                  [alert_bytes(type="kill_switch_activated", severity=1, summary="kill switch on",
                               fingerprint="ks:1", event_timestamp=bucket_time())])
    # the alert's webhook delivery dies and fails over to email; the alert_delivery_failed alert
    # it raises opens the circuit with its first failure: it fails over to email at once, keeps
    # trying (at the breaker's probes: no attempt spent waiting), dies, and raises nothing more
    dlq = await read_topic(stack.bootstrap, stack.topic("dlq"), min_count=2, timeout=30)
    await smtp.wait_for(2, timeout=30)
    await asyncio.sleep(4.0)
    decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=2)
    failed = [d for d in decisions if d["value"]["alert"]["type"] == "alert_delivery_failed"]
    assert len(failed) == 1
    assert failed[0]["value"]["alert"]["severity"] == 1
    assert dlq[0]["value"]["destination"] == "webhook:default" and dlq[0]["value"]["attempt"] == 4
    subjects = sorted(m["Subject"] for m in smtp.messages)
    assert "[SEV1] kill switch on" in subjects
    assert any(s.startswith("[SEV1] Delivery to webhook:default failed") for s in subjects)
    assert len(dlq) == 2 and len(smtp.messages) == 2
    attempts = await read_topic(stack.bootstrap, stack.topic("attempts"), min_count=10)
    hook = [a["value"]["status"] for a in attempts if a["value"]["channel"] == "webhook"]
    assert hook.count("dead") == 2 and hook.count("failed") == 6
    # an attempt is a contact: four each; the open circuit deferred them in between
    assert len(webhook.requests) == 8 and hook.count("circuit_open") >= 1


async def test_sigkill_mid_stream_loses_nothing(stack: Stack, webhook: HttpReceiver, smtp: SmtpReceiver) -> None:
    n_fp, per_fp = 500, 4
    env = delivery_env(webhook, smtp)
    w1 = await stack.start_worker(**env)
    items = [alert_bytes(type="order_rejected", severity=2, summary=f"rejected {i}", account_id=f"acc{i % n_fp}",
                         event_timestamp=bucket_time(i % 60)) for i in range(n_fp * per_fp)]
    await produce(stack.bootstrap, stack.topic("alerts"), items)
    await webhook.wait_for(lambda r: len(r) >= 100, timeout=60)
    concurrency = int(env.get("TOCSIN_DELIVERY_CONCURRENCY", "64"))
    w1.kill()
    killed_at = len(webhook.requests)
    # what the broker holds of the killed worker: the delivery states acknowledged before the
    # kill (a SIGKILL sends nothing more; a request already in the broker's socket is applied
    # within the settle)
    states = await read_topic(stack.bootstrap, f"{stack.prefix}-worker-deliveries-changelog", settle=1.0, timeout=3)
    acked_sent = {m["key"].strip('"') for m in states if isinstance(m["value"], list) and m["value"][0] == "sent"}
    answered_before = {r.body["delivery_id"] for r in webhook.requests}
    await stack.start_worker(**env)
    reqs = await webhook.wait_for(lambda r: len({x.body["alert"]["fingerprint"] for x in r}) >= n_fp, timeout=120)
    await asyncio.sleep(2.0)
    reqs = webhook.requests
    per_fp_ids: dict[str, set[str]] = {}
    posts: dict[str, int] = {}
    for r in reqs:
        per_fp_ids.setdefault(r.body["alert"]["fingerprint"], set()).add(r.body["delivery_id"])
        posts[r.body["delivery_id"]] = posts.get(r.body["delivery_id"], 0) + 1
    assert len(per_fp_ids) == n_fp  # every notified fingerprint reached the webhook
    assert all(len(ids) == 1 for ids in per_fp_ids.values())  # one delivery_id per fingerprint
    repeated = {d for d, n in posts.items() if n > 1}
    repeats = len(reqs) - n_fp
    # in flight at the kill: the POSTs under way (at most the concurrency) and the ones answered
    # whose `sent` state had not reached the broker; nothing the broker knew as sent is repeated
    unacked = answered_before - acked_sent
    print(f"\nSIGKILL after {killed_at} webhook requests: {repeats} repeated POSTs "
          f"({len(acked_sent)} states on the broker, {len(unacked)} answered without one, {concurrency} sends)")
    assert repeated.isdisjoint(acked_sent)
    assert all(n <= 2 for n in posts.values())
    assert repeated <= answered_before  # a repeat is of a POST the killed worker made
    assert repeats <= len(unacked) + concurrency
    assert all(r.headers["Idempotency-Key"] == r.body["delivery_id"] for r in reqs)


async def test_sev1_overtakes_a_backlog_of_5000_sev3(stack: Stack, webhook: HttpReceiver) -> None:
    async def slow(req, n):  # noqa: ARG001 - aiohttp handler shape
        return 200

    def script(req, n):
        return 200
    webhook.script = script
    await stack.start_worker(TOCSIN_WEBHOOK_DEFAULT_URL=webhook.url, TOCSIN_DELIVERY_CONCURRENCY="8")
    now = dt.datetime.now(dt.UTC)

    def command(i: int, severity: int) -> tuple[bytes, bytes]:
        return webhook_command(i, severity, now)

    await produce(stack.bootstrap, stack.topic("deliveries.webhook"), [command(i, 3) for i in range(5000)])
    await webhook.wait_for(lambda r: len(r) >= 50)
    sent_at = time.time()
    await produce(stack.bootstrap, stack.topic("deliveries.webhook"), [command(99999, 1)])
    reqs = await webhook.wait_for(lambda r: any(x.body["alert"]["severity"] == 1 for x in r), timeout=30)
    sev1 = next(x for x in reqs if x.body["alert"]["severity"] == 1)
    sev3_before = sum(1 for x in reqs if x.at < sev1.at)
    print(f"\nSEV1 delivered {sev1.at - sent_at:.3f}s after produce, behind {sev3_before} SEV3 of 5000")
    assert sev1.at - sent_at < 1.0
    assert sev3_before < 5000


def webhook_command(i: int, severity: int, now: dt.datetime) -> tuple[bytes, bytes]:
    a = create_alert(type="storage_threshold", severity=severity, summary=f"s{severity} {i}",
                     fingerprint=f"fs:{i}", event_timestamp=now)
    key = f"{a.fingerprint}:0"
    did = delivery_id_for(key, "webhook:default", "webhook:default")
    cmd = DeliveryCommand(delivery_id=did, alert=a, dedupe_key=key, receiver="webhook:default",
                          destination="webhook:default")
    return did.encode(), dumps(cmd)


async def test_a_small_read_ahead_reads_in_steps_and_reports_the_lag(stack: Stack, webhook: HttpReceiver) -> None:
    """A read-ahead smaller than a read batch still reads (a few at a time), and the commands
    not read yet show as the topic's lag on /metrics until they are."""
    from prometheus_client.parser import text_string_to_metric_families

    async def slow(req: object, n: int) -> int:  # noqa: ARG001 - the script's shape
        await asyncio.sleep(0.05)
        return 200

    webhook.script = slow
    w = await stack.start_worker(TOCSIN_WEBHOOK_DEFAULT_URL=webhook.url, TOCSIN_DELIVERY_READ_AHEAD="5",
                                 TOCSIN_DELIVERY_CONCURRENCY="2")
    topic = stack.topic("deliveries.webhook")

    async def lag() -> float | None:
        async with aiohttp.ClientSession() as s, s.get(f"{w.url}/metrics") as r:
            text = await r.text()
        for fam in text_string_to_metric_families(text):
            for smp in fam.samples:
                if smp.name == "tocsin_consumer_lag" and smp.labels.get("topic") == topic:
                    return smp.value
        return None

    n = 300  # 2 at a time, 50 ms each: about 7 s
    now = dt.datetime.now(dt.UTC)
    await produce(stack.bootstrap, topic, [webhook_command(i, 3, now) for i in range(n)])
    seen: list[float | None] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(v and v > 0 for v in seen):
        seen.append(await lag())
        await asyncio.sleep(0.5)
    assert any(v and v > 0 for v in seen), seen  # the unread commands are the topic's lag
    reqs = await webhook.wait_for(lambda r: len(r) >= n, timeout=60)
    assert len({r.body["delivery_id"] for r in reqs}) == n
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and await lag() != 0:
        await asyncio.sleep(0.5)
    assert await lag() == 0
    await asyncio.sleep(0.5)
    assert len(webhook.requests) == n  # each once


async def test_dlq_list_and_redrive(stack: Stack, webhook: HttpReceiver, smtp: SmtpReceiver) -> None:
    import json
    import subprocess
    import sys

    webhook.script = lambda req, n: 410 if n == 1 else 200  # gone, then fixed
    env = {**delivery_env(webhook, smtp), "TOCSIN_ROUTING_FILE": routing_file(stack.tmp)}
    await stack.start_worker(**env)
    await produce(stack.bootstrap, stack.topic("alerts"),
                  [alert_bytes(type="db_write_fail", severity=2, summary="orders db", fingerprint="db:dlq",
                               event_timestamp=bucket_time())])
    dlq = await read_topic(stack.bootstrap, stack.topic("dlq"), min_count=1)
    did = dlq[0]["value"]["delivery_id"]
    cli_env = {**stack.env, **env}

    def tocsin(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tocsin.cli.main", *args], env=cli_env,
                              capture_output=True, text=True, timeout=60)

    listed = await asyncio.to_thread(tocsin, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["command"]["delivery_id"] for r in rows] == [did]
    assert "HTTP 410" in rows[0]["error"]

    dry = await asyncio.to_thread(tocsin, "dlq", "redrive", "--id", did, "--dry-run")
    assert dry.returncode == 0 and "would redrive" in dry.stdout
    await asyncio.sleep(1.0)
    assert len(webhook.requests) == 1  # a dry run sends nothing

    unknown = await asyncio.to_thread(tocsin, "dlq", "redrive", "--id", "nope")
    assert unknown.returncode == 1 and "not on" in unknown.stderr

    done = await asyncio.to_thread(tocsin, "dlq", "redrive", "--id", did)
    assert done.returncode == 0, done.stderr
    reqs = await webhook.wait_for(lambda r: len(r) >= 2)
    assert reqs[1].body["delivery_id"] == did and reqs[1].headers["Idempotency-Key"] == did
    again = await asyncio.to_thread(tocsin, "dlq", "redrive", "--all")  # delivered now: skipped
    assert again.returncode == 0
    await asyncio.sleep(1.5)
    assert len(webhook.requests) == 2


async def test_rate_limit_defers_through_the_retry_topic(stack: Stack, webhook: HttpReceiver) -> None:
    routing = routing_file(stack.tmp, """
always = []
[severity]
1 = []
2 = ["slack:default"]
3 = []
""")
    # Slack's published limit is about 1 message per second per webhook: the channel's default
    await stack.start_worker(TOCSIN_SLACK_DEFAULT_WEBHOOK=webhook.url, TOCSIN_ROUTING_FILE=routing)
    await produce(stack.bootstrap, stack.topic("alerts"), [
        alert_bytes(type="db_write_fail", severity=2, summary=f"s{i}", fingerprint=f"rl:{i}",
                    event_timestamp=bucket_time(i)) for i in range(3)])
    reqs = await webhook.wait_for(lambda r: len(r) >= 3, timeout=30)
    times = sorted(r.at for r in reqs)
    assert times[1] - times[0] >= 0.7 and times[2] - times[1] >= 0.7  # ~1/s, not all at once
    assert all("blocks" in r.body for r in reqs)  # Slack's payload
    attempts = await read_topic(stack.bootstrap, stack.topic("attempts"),
                                until=lambda ms: sum(m["value"]["status"] == "sent" for m in ms) >= 3)
    statuses = [a["value"]["status"] for a in attempts]
    assert statuses.count("sent") == 3 and statuses.count("rate_limited") >= 2
    assert all(a["value"]["attempt"] == 1 for a in attempts)  # a deferral spends no attempt


async def test_garbage_on_internal_topics_is_kept_and_nothing_stops(stack: Stack, webhook: HttpReceiver) -> None:
    await stack.start_worker(TOCSIN_WEBHOOK_DEFAULT_URL=webhook.url, TOCSIN_RECORD_ENABLED="true")
    internal = ("deliveries.webhook", "deliveries.retry", "decisions", "lifecycle", "attempts")
    for name in internal:
        await produce(stack.bootstrap, stack.topic(name), [(b"junk", b"\xffnot json")])
    await produce(stack.bootstrap, stack.topic("alerts"), [
        alert_bytes(type="db_write_fail", severity=2, summary="after the junk", fingerprint="junk:1",
                    event_timestamp=bucket_time())])
    await webhook.wait_for(lambda r: len(r) == 1)  # every agent is still working
    dlq = await read_topic(stack.bootstrap, stack.topic("dlq"),
                           until=lambda ms: len({m["value"].get("source", {}).get("topic") or m["value"].get("kind")
                                                 for m in ms}) >= len(internal))
    kept = {m["value"].get("source", {}).get("topic") or m["value"]["kind"] for m in dlq}
    assert {stack.topic("deliveries.webhook"), stack.topic("deliveries.retry"), stack.topic("decisions"),
            stack.topic("lifecycle")} <= kept
    assert "attempts" in kept or "decisions" in kept  # the recorder's reject
    assert all(m["value"]["raw"] and m["value"]["error"] for m in dlq)
