"""Escalation policies on the real broker (#18 item 7): step 0 with the notification, step 1
through the retry topic to a second webhook receiver; an acknowledgement before the step is
due stops it (recorded), an un-acknowledge resumes it. No timed asserts: every wait is for an
outcome."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tocsin.bench.peers import Received
from tocsin.schemas import create_alert, dumps

from .harness import HttpReceiver, Stack, produce, read_topic

pytestmark = pytest.mark.integration
TOKEN = "escalation-api-token"

ROUTING = """
[severity]
1 = ["webhook:default"]

[destinations."webhook:lead"]
url_env = "ESCALATION_LEAD_URL"

# the fast one: step 1 two seconds after the alert's event time
[escalations.fast]
types = ["kill_switch_activated"]
[[escalations.fast.steps]]
after_s = 0
to = ["webhook:default"]
[[escalations.fast.steps]]
after_s = 2
to = ["webhook:lead"]

# the slow one: time to acknowledge before step 1 is due
[escalations.slow]
types = ["db_write_fail"]
[[escalations.slow.steps]]
after_s = 0
to = ["webhook:default"]
[[escalations.slow.steps]]
after_s = 15
to = ["webhook:lead"]
"""


def fingerprint_of(req: Received) -> str | None:
    body = req.body if isinstance(req.body, dict) else {}
    alert = body.get("alert") if isinstance(body.get("alert"), dict) else {}
    return alert.get("fingerprint")  # type: ignore[no-any-return, union-attr]


def escalations(decisions: list[dict[str, Any]], fp: str) -> list[tuple[str, str]]:
    return [(d["value"]["outcome"], d["value"]["reason"]) for d in decisions
            if d["value"]["alert"]["fingerprint"] == fp and d["value"]["outcome"].startswith("escalat")]


async def action(base: str, fp: str, what: str) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s, \
            s.post(f"{base}/api/alerts/{fp}/{what}", json={"by": "ann"}) as r:
        assert r.status == 202, await r.text()


@pytest.mark.timeout(150)
async def test_a_step_reaches_its_target_and_an_acknowledgement_stops_it_until_unacknowledged(
        stack: Stack, webhook: HttpReceiver, tmp_path: Path) -> None:
    lead = await HttpReceiver().start()
    try:
        routing = tmp_path / "routing.toml"
        routing.write_text(ROUTING)
        w = await stack.start_worker(TOCSIN_ROUTING_FILE=str(routing), TOCSIN_WEBHOOK_DEFAULT_URL=webhook.url,
                                     ESCALATION_LEAD_URL=lead.url, TOCSIN_API_TOKEN=TOKEN)
        now = dt.datetime.now(dt.UTC)
        slow = create_alert("db_write_fail", 1, "db down", fingerprint="esc:slow", event_timestamp=now)
        fast = create_alert("kill_switch_activated", 1, "kill switch", fingerprint="esc:fast", event_timestamp=now)
        await produce(stack.bootstrap, stack.topic("alerts"), [(slow.fingerprint.encode(), dumps(slow))])
        # notified (step 0 is the same destination as the route: one delivery)
        await webhook.wait_for(lambda rs: any(fingerprint_of(r) == "esc:slow" for r in rs))
        await action(w.url, "esc:slow", "acknowledge")

        await produce(stack.bootstrap, stack.topic("alerts"), [(fast.fingerprint.encode(), dumps(fast))])
        # the fast alert's step 1 reaches the second receiver
        got = await lead.wait_for(lambda rs: any(fingerprint_of(r) == "esc:fast" for r in rs), timeout=60)
        assert [fingerprint_of(r) for r in got] == ["esc:fast"]

        # the slow alert's step 1 comes due acknowledged: stopped, recorded with its reason
        decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), timeout=60,
                                     until=lambda ds: any(o == "escalation_stopped"
                                                          for o, _ in escalations(ds, "esc:slow")))
        slow_steps = escalations(decisions, "esc:slow")
        assert ("escalation_stopped", "escalation slow step 1/1: stopped: acknowledged by ann") in slow_steps
        assert not any(fingerprint_of(r) == "esc:slow" for r in lead.requests)
        fast_steps = escalations(decisions, "esc:fast")
        assert ("escalated", "escalation fast step 0/1: to webhook:default with the notification") in fast_steps
        assert ("escalated", "escalation fast step 1/1: to webhook:lead; the last step") in fast_steps

        # un-acknowledged: the chain resumes at the step it stopped at, now
        await action(w.url, "esc:slow", "unacknowledge")
        await lead.wait_for(lambda rs: any(fingerprint_of(r) == "esc:slow" for r in rs), timeout=60)
        decisions = await read_topic(stack.bootstrap, stack.topic("decisions"), timeout=30,
                                     until=lambda ds: ("escalated", "escalation slow step 1/1: to webhook:lead; "
                                                       "the last step") in escalations(ds, "esc:slow"))
        attempts = await read_topic(stack.bootstrap, stack.topic("attempts"), timeout=30,
                                    until=lambda a: sum(x["value"]["destination"] == "webhook:lead"
                                                        and x["value"]["status"] == "sent" for x in a) >= 2)
        sent = [a["value"]["fingerprint"] for a in attempts
                if a["value"]["destination"] == "webhook:lead" and a["value"]["status"] == "sent"]
        assert sorted(sent) == ["esc:fast", "esc:slow"]  # each step sent once
    finally:
        await lead.stop()
