"""The core pipeline on the real Tansu broker, a real HTTP receiver and a real SMTP server."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid

import orjson
import pytest

from tocsin.schemas import create_alert, dumps

from .harness import HttpReceiver, SmtpReceiver, Stack, produce, read_topic

pytestmark = pytest.mark.integration


#: the wall-clock time a test started at (conftest's ``one_bucket_per_test``): every
#: ``bucket_time`` of one test falls in the same throttle bucket, also when the test runs
#: across a bucket's boundary (events a few minutes old are well within the table's expiry)
PINNED: list[float] = []


def bucket_time(offset_s: float = 0.0, window: int = 600) -> dt.datetime:
    """A time well inside the throttle bucket the test started in."""
    now = PINNED[-1] if PINNED else time.time()
    start = now // window * window
    return dt.datetime.fromtimestamp(start + 5 + offset_s, dt.UTC)


def alert_bytes(**kw) -> tuple[bytes, bytes]:
    ev = create_alert(**kw)
    return ev.fingerprint.encode(), dumps(ev)


def delivery_env(webhook: HttpReceiver, smtp: SmtpReceiver) -> dict[str, str]:
    return {
        "TOCSIN_WEBHOOK_DEFAULT_URL": webhook.url,
        "TOCSIN_EMAIL_DEFAULT_TO": "oncall@example.test",
        "TOCSIN_SMTP_HOST": "127.0.0.1",
        "TOCSIN_SMTP_PORT": str(smtp.port),
    }


async def test_first_sev1_notified_by_webhook_and_email_rest_suppressed(
        stack: Stack, webhook: HttpReceiver, smtp: SmtpReceiver) -> None:
    await stack.start_worker(**delivery_env(webhook, smtp))
    items = [alert_bytes(type="order_rejected", severity=1, summary=f"Order rejected #{i}", account_id="A1",
                         symbol="BTC-USD", strategy_id="s1", event_timestamp=bucket_time(i))
             for i in range(6)]
    await produce(stack.bootstrap, stack.topic("alerts"), items)

    await webhook.wait_for(lambda r: len(r) >= 1)
    mails = await smtp.wait_for(1)
    decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=6)
    await asyncio.sleep(1.5)  # nothing more may arrive

    outcomes = [d["value"]["outcome"] for d in decisions]
    assert outcomes.count("notify") == 1 and outcomes.count("suppress") == 5
    assert max(d["value"]["suppressed_count"] for d in decisions) == 5
    assert {d["key"] for d in decisions} == {"order_rejected:A1:BTC-USD:s1"}
    assert len(webhook.requests) == 1 and len(smtp.messages) == 1
    hook = webhook.requests[0]
    assert hook.body["alert"]["summary"] == "Order rejected #0"
    assert hook.body["text"].startswith("[SEV1] Order rejected #0")
    assert hook.headers["Idempotency-Key"] == hook.body["delivery_id"]
    mail = mails[0]
    assert mail["Subject"] == "[SEV1] Order rejected #0"
    types = {part.get_content_type() for part in mail.walk()}
    assert {"text/plain", "text/html"} <= types
    # the console and file channels got it too
    lines = (stack.tmp / "notifications.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line)["alert"]["summary"] for line in lines] == ["Order rejected #0"]


async def test_every_recovery_is_notified(stack: Stack, webhook: HttpReceiver, smtp: SmtpReceiver) -> None:
    await stack.start_worker(**delivery_env(webhook, smtp))
    items = [alert_bytes(type="component_recovered", severity=2, summary=f"redis back #{i}",
                         fingerprint="component_recovered:redis", event_timestamp=bucket_time(i))
             for i in range(3)]
    items.append(alert_bytes(type="db_write_fail", severity=2, summary="resolved by hand",
                             fingerprint="db_write_fail:orders", action="resolve",
                             event_timestamp=bucket_time(4)))
    await produce(stack.bootstrap, stack.topic("alerts"), items)
    await webhook.wait_for(lambda r: len(r) >= 4)
    decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=4)
    assert [d["value"]["outcome"] for d in decisions].count("bypass") == 4
    resolves = {d["value"]["alert"]["resolves"] for d in decisions}
    assert "component_unhealthy:redis" in resolves
    assert len({r.body["delivery_id"] for r in webhook.requests}) == 4


async def test_invalid_messages_are_kept_and_the_next_valid_flows(stack: Stack) -> None:
    await stack.start_worker()
    ts = bucket_time().isoformat()
    naive = bucket_time().replace(tzinfo=None).isoformat()
    bad = [
        (b"k1", b"{not json"),
        (b"k2", orjson.dumps({"type": "order_failed_permanently", "severity": 1, "summary": "x",
                              "event_timestamp": naive})),
        (b"k3", orjson.dumps({"type": "order_failed_permanently", "severity": 7, "summary": "x",
                              "event_timestamp": ts})),
        (b"k4", b"\xff\xfe\x00binary"),
    ]
    await produce(stack.bootstrap, stack.topic("alerts"), bad)
    await produce(stack.bootstrap, stack.topic("alerts"),
                  [alert_bytes(type="storage_threshold", severity=3, summary="disk 91%",
                               fingerprint="storage_threshold:db1", event_timestamp=bucket_time())])
    invalid = await read_topic(stack.bootstrap, stack.topic("alerts.invalid"), min_count=4)
    decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=1)
    by_key = {m["key"]: m["value"] for m in invalid}
    assert "invalid JSON" in by_key["k1"]["errors"][0]
    assert by_key["k1"]["raw"] == "{not json" and by_key["k1"]["raw_encoding"] == "text"
    assert any("naive" in e for e in by_key["k2"]["errors"])
    assert any(e.startswith("severity") for e in by_key["k3"]["errors"])
    assert by_key["k4"]["raw_encoding"] == "base64"
    for v in by_key.values():
        assert v["source"]["topic"] == stack.topic("alerts") and v["source"]["offset"] >= 0
    assert decisions[0]["value"]["alert"]["fingerprint"] == "storage_threshold:db1"
    assert decisions[0]["value"]["outcome"] == "notify"


async def test_confluent_kafka_producer_is_processed(stack: Stack) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    await stack.start_worker()
    p = confluent_kafka.Producer({"bootstrap.servers": stack.bootstrap})
    ev = create_alert(type="kill_switch_activated", severity=1, summary="kill switch", account_id="A9",
                      event_timestamp=bucket_time())
    # librdkafka's default partitioner differs from Kafka's murmur2: Tocsin repartitions
    p.produce(stack.topic("alerts"), key=ev.fingerprint.encode(), value=dumps(ev))
    assert p.flush(15) == 0
    decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=1)
    assert decisions[0]["value"]["alert"]["alert_id"] == str(ev.alert_id)
    assert decisions[0]["value"]["outcome"] == "notify"


async def test_unkeyed_events_are_repartitioned_by_fingerprint(stack: Stack) -> None:
    await stack.start_worker()
    evs = [create_alert(type="position_limit_hit", severity=2, summary=f"limit {i}", account_id="A2",
                        symbol="ETH", event_timestamp=bucket_time(i)) for i in range(4)]
    await produce(stack.bootstrap, stack.topic("alerts"), [(None, dumps(e)) for e in evs])
    decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=4)
    assert [d["value"]["outcome"] for d in decisions].count("notify") == 1
    assert len({d["partition"] for d in decisions}) == 1


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
async def test_restarted_worker_restores_the_throttle_table(stack: Stack, webhook: HttpReceiver,
                                                             smtp: SmtpReceiver, store: str) -> None:
    env = {**delivery_env(webhook, smtp), "TOCSIN_TABLE_STORE": store}
    w1 = await stack.start_worker(**env)
    fp = f"db_write_fail:{uuid.uuid4().hex[:6]}"
    await produce(stack.bootstrap, stack.topic("alerts"),
                  [alert_bytes(type="db_write_fail", severity=2, summary="write failed", fingerprint=fp,
                               event_timestamp=bucket_time(1))])
    await webhook.wait_for(lambda r: len(r) == 1)
    await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=1)
    await asyncio.sleep(1.5)  # let the changelog and offsets be committed
    w1.stop()
    await stack.start_worker(**env)
    await produce(stack.bootstrap, stack.topic("alerts"),
                  [alert_bytes(type="db_write_fail", severity=2, summary="write failed again",
                               fingerprint=fp, event_timestamp=bucket_time(2))])
    decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=2)
    await asyncio.sleep(1.0)
    assert [d["value"]["outcome"] for d in decisions] == ["notify", "suppress"]
    assert decisions[1]["value"]["suppressed_count"] == 1
    assert len(webhook.requests) == 1
