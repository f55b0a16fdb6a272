"""Per-type throttle windows and digests (#18 items 1 and 6) on the real broker, a worker
process and a real webhook receiver. Event times are yesterday's (fake, passed in): the
24-hour window they fall in has ended, so its digest is due as soon as it is scheduled."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid

import pytest

from tocsin.schemas import create_alert, dumps

from .harness import HttpReceiver, Stack, produce, read_topic

pytestmark = pytest.mark.integration

ROUTING = """
[severity]
2 = ["webhook:default"]

[throttle.types]
order_rejected = 86400

[digests]
types = ["order_rejected"]
"""


#: the start of yesterday (UTC), once for the module: a test crossing midnight keeps its day
DAY = (int(time.time()) // 86400 - 1) * 86400


def yesterday(offset_s: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(DAY + offset_s, dt.UTC)


async def test_per_type_window_and_its_digest(stack: Stack, webhook: HttpReceiver) -> None:
    routing = stack.tmp / "routing.toml"
    routing.write_text(ROUTING)
    await stack.start_worker(TOCSIN_WEBHOOK_DEFAULT_URL=webhook.url, TOCSIN_ROUTING_FILE=str(routing))
    rejected = [create_alert(type="order_rejected", severity=2, summary=f"rejected #{i}", account_id="ACC1",
                             alert_id=uuid.uuid4(), event_timestamp=yesterday(t))
                for i, t in enumerate((100, 200, 3700, 36000))]  # hours apart: one 24-hour window
    failing = [create_alert(type="db_write_fail", severity=2, summary=f"db #{i}", fingerprint="db_write_fail:orders",
                            alert_id=uuid.uuid4(), event_timestamp=yesterday(t))
               for i, t in enumerate((100, 3700))]  # the default 10-minute window: two windows
    items = [(e.fingerprint.encode(), dumps(e)) for e in [*rejected, *failing]]
    await produce(stack.bootstrap, stack.topic("alerts"), items)

    # 1 + 2 notifications, then the digest of the order_rejected window
    await webhook.wait_for(lambda r: len(r) >= 4)
    decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=7)
    by_outcome: dict[str, list[dict]] = {}
    for d in decisions:
        by_outcome.setdefault(d["value"]["outcome"], []).append(d["value"])
    assert len(by_outcome["notify"]) == 3 and len(by_outcome["suppress"]) == 3
    day = DAY // 86400
    keys = {d["alert"]["type"]: d["dedupe_key"] for d in by_outcome["suppress"]}
    assert keys == {"order_rejected": f"order_rejected:ACC1:::{day}/86400s"}
    db_keys = sorted(d["dedupe_key"] for d in by_outcome["notify"] if d["alert"]["type"] == "db_write_fail")
    assert db_keys == sorted(f"db_write_fail:orders:{int(e.epoch) // 600}" for e in failing)  # as before

    [digest] = by_outcome["digest"]
    assert digest["suppressed_count"] == 3 and digest["destinations"] == ["webhook:default"]
    assert digest["reason"].startswith("digest: 3 suppressed in the 24 h window from ")
    [hook] = [r for r in webhook.requests if "digest" in r.body]
    assert hook.body["suppressed_count"] == 3 and hook.body["digest"]["window_s"] == 86400
    assert "DIGEST order_rejected ACC1 fired 3 more times in the last 24 h" in hook.body["text"]
    assert hook.headers["Idempotency-Key"] == hook.body["delivery_id"]

    # the same events again (a replay of the topic): no notification and no digest twice
    await produce(stack.bootstrap, stack.topic("alerts"), items)
    await read_topic(stack.bootstrap, stack.topic("decisions"), min_count=13)
    await asyncio.sleep(3.0)  # nothing more may arrive
    assert len(webhook.requests) == 4
