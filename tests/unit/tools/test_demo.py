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
ENABLED = {"webhook:ok", "webhook:oncall", "webhook:lead", "webhook:failing", "console:default", "file:default"}


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
    reasons, outcomes, noise = {}, {}, {}
    for s in script(START):
        p = preview(s.event, policy, ENABLED, 600, START)
        reasons[s.event.type] = (p.decision["reason"], [d.route.destination for d in p.deliveries])
        outcomes[s.event.type] = p.decision["outcome"]
        noise[s.event.type] = " | ".join(p.noise)
    # the broken endpoint fails over to webhook:ok
    assert policy.policy_for("webhook:failing").failover == ("webhook:ok",)
    assert "webhook:failing" in reasons["venue_disconnected"][1]
    # the on-call person's quiet hours (around the demo's start) keep a SEV2 from her, not a SEV1
    reason, dests = reasons["daily_loss_limit"]
    assert "webhook:oncall removed (dana's quiet hours" in reason and "webhook:oncall" not in dests
    assert "webhook:oncall" in reasons["position_limit_hit"][1]
    # noise control, each step as the dry run sees it (what depends on the broker's state, as a condition)
    assert outcomes["fill_rejected"] == "grouped" and reasons["fill_rejected"][0] == "fills|type=fill_rejected,account_id=ACC5"
    assert outcomes["batch_job_failed"] == "muted" and reasons["batch_job_failed"][0] == "interval:demo-maintenance"
    assert "throttle: a 60 s window for type order_rejected" in noise["order_rejected"]
    assert "digest:" in noise["order_rejected"]
    assert "inhibition: held while a source of rule 'venue down mutes its stale quotes' fires" in noise["stale_quotes"]
    assert "flapping: more than 3 firing/resolved changes within 300 s" in noise["component_unhealthy"]
    assert "escalation 'kill' unless acknowledged or resolved: after 0 s to webhook:oncall; after 15 s to webhook:lead" \
        in noise["kill_switch_activated"]
    assert noise["daily_loss_limit"] == ""  # nothing but her preferences


def test_the_maintenance_window_holds_across_midnight() -> None:
    """A demo started a moment before midnight: its batch failure, sent after midnight, is muted."""
    start = dt.datetime(2026, 12, 7, 23, 59, 50, tzinfo=dt.UTC)
    policy = parse_policy(tomllib.loads(routing("/x/demo-routing.toml", start)))
    failure = next(s.event for s in script(start) if s.event.type == "batch_job_failed")
    assert failure.event_timestamp.day == 8
    assert preview(failure, policy, ENABLED, 600, start).decision["outcome"] == "muted"
