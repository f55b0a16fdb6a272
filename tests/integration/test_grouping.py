"""Grouping (#18 item 2) on the real broker: a group's alerts reach the webhook as one POST
listing them; an alert joining later makes one more after the group interval."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from tocsin.schemas import create_alert, dumps

from .harness import HttpReceiver, Stack, produce, read_topic
from .test_pipeline import bucket_time

KEY = "orders|type=order_rejected,account_id=A1"


def routing(tmp: Path) -> str:
    p = tmp / "routing.toml"
    p.write_text("""
always = ["console:default", "file:default"]
[severity]
2 = ["webhook:default"]

[[groups]]
name = "orders"
types = ["order_rejected"]
group_by = ["type", "account_id"]
group_wait_s = 2
group_interval_s = 2
repeat_interval_s = 86400
resolve_timeout_s = 86400
list_max = 3
""")
    return str(p)


def rejected(i: int, offset_s: float) -> tuple[bytes, bytes]:
    ev = create_alert(type="order_rejected", severity=2, summary=f"order #{i} rejected", account_id="A1",
                      symbol=f"S{i}", event_timestamp=bucket_time(offset_s))
    return ev.fingerprint.encode(), dumps(ev)


def group_posts(webhook: HttpReceiver) -> list[dict]:
    return [r.body for r in webhook.requests if r.body and r.body.get("group")]


async def test_a_group_is_one_post_listing_its_alerts_and_a_later_alert_one_more(
        stack: Stack, webhook: HttpReceiver) -> None:
    await stack.start_worker(TOCSIN_WEBHOOK_DEFAULT_URL=webhook.url, TOCSIN_ROUTING_FILE=routing(stack.tmp))
    # five alerts of one group (one account, five symbols: five fingerprints the throttle notifies),
    # and one of another type, not grouped
    await produce(stack.bootstrap, stack.topic("alerts"), [rejected(i, i * 0.1) for i in range(5)])
    other = create_alert(type="db_write_fail", severity=2, summary="db down", fingerprint="db_write_fail:x",
                         event_timestamp=bucket_time(0.2))
    await produce(stack.bootstrap, stack.topic("alerts"), [(b"db_write_fail:x", dumps(other))])

    await webhook.wait_for(lambda r: len(group_posts(webhook)) >= 1 and len(r) >= 2)
    first = group_posts(webhook)[0]
    assert first["group"]["key"] == KEY and first["group"]["total"] == 5 and first["group"]["seq"] == 1
    assert sorted(a["summary"] for a in first["group"]["alerts"]) == [f"order #{i} rejected" for i in range(5)]
    assert first["group"]["reason"] == "first notification"
    lines = first["text"].splitlines()
    assert lines[0] == f"[SEV2] 5 alerts in group {KEY}" and lines[-1] == "and 2 more" and len(lines) == 5
    # the ungrouped alert went on its own
    assert [r.body["alert"]["summary"] for r in webhook.requests if not r.body.get("group")] == ["db down"]

    decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=6)
    grouped = [d["value"] for d in decisions if d["value"]["outcome"] == "grouped"]
    assert len(grouped) == 5 and {d["reason"] for d in grouped} == {KEY}
    assert all(d["destinations"] == [] for d in grouped)

    # a sixth alert of the group, later: one more POST, after the group interval, listing six
    await produce(stack.bootstrap, stack.topic("alerts"), [rejected(5, 3)])
    await webhook.wait_for(lambda r: len(group_posts(webhook)) >= 2)
    second = group_posts(webhook)[1]
    assert second["group"]["total"] == 6 and second["group"]["seq"] == 2
    assert second["group"]["reason"] == "group changed"
    assert "order #5 rejected" in {a["summary"] for a in second["group"]["alerts"]}
    assert second["delivery_id"] != first["delivery_id"]

    await asyncio.sleep(3)  # nothing changed since: no more group notifications
    assert len(group_posts(webhook)) == 2
    # the file channel wrote the same group notifications, listing the alerts
    notes = [orjson.loads(line) for line in (stack.tmp / "notifications.jsonl").read_bytes().splitlines()]
    assert [n["group"]["total"] for n in notes if n.get("group")] == [5, 6]
