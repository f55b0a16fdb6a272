"""The demo's script and routing (tools/demo.py): what ``tocsin dev --demo`` promises a
newcomer is in them, decided as the worker would (the dry run's decisions)."""

from __future__ import annotations

import datetime as dt
import tomllib
from collections import Counter

from tocsin.decisions.preview import preview
from tocsin.decisions.routing import parse_policy
from tocsin.tools.demo import routing, script

START = dt.datetime(2026, 12, 7, 3, 30, tzinfo=dt.UTC)
ENABLED = {"webhook:ok", "webhook:oncall", "webhook:failing", "console:default", "file:default"}


def test_the_script_holds_what_the_demo_promises() -> None:
    steps = script(START)
    assert [s.at_s for s in steps] == sorted(s.at_s for s in steps)
    assert steps[-1].at_s <= 60  # within a minute
    assert all(s.event.event_timestamp == START + dt.timedelta(seconds=s.at_s) for s in steps)
    by_fp = Counter(s.event.fingerprint for s in steps)
    assert max(by_fp.values()) >= 10  # a noisy fingerprint
    assert any(s.event.is_recovery for s in steps)
    assert any(s.event.type == "venue_disconnected" for s in steps)
    again = script(START)  # the clock a parameter: the same script (but for the alerts' new ids)
    assert [(s.at_s, s.event.fingerprint, s.event.event_timestamp) for s in again] == \
        [(s.at_s, s.event.fingerprint, s.event.event_timestamp) for s in steps]


def test_the_routing_routes_the_script_as_promised() -> None:
    policy = parse_policy(tomllib.loads(routing("/x/demo-routing.toml", START)))
    reasons = {}
    for s in script(START):
        p = preview(s.event, policy, ENABLED, 600, START)
        reasons[s.event.type] = (p.decision["reason"], [d.route.destination for d in p.deliveries])
    # the broken endpoint fails over to webhook:ok
    assert policy.policy_for("webhook:failing").failover == ("webhook:ok",)
    assert "webhook:failing" in reasons["venue_disconnected"][1]
    # the on-call person's quiet hours (around the demo's start) keep a SEV2 from her, not a SEV1
    reason, dests = reasons["daily_loss_limit"]
    assert "webhook:oncall removed (dana's quiet hours" in reason and "webhook:oncall" not in dests
    assert "webhook:oncall" in reasons["position_limit_hit"][1]
