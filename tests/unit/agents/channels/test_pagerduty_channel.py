"""The PagerDuty channel without a network: its settings, the Events API v2 event of each
command (trigger, resolve, acknowledge), dedup keys, and the relays of on-call actions on paged
fingerprints (agents/channels/pagerduty.py, folded in agents/lifecycle.py)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from tocsin.agents.channels import build_channels
from tocsin.agents.channels.pagerduty import (
    DEDUP_KEY_MAX,
    PagerDutyChannel,
    dedup_key,
    relays,
    render,
)
from tocsin.agents.lifecycle import fold
from tocsin.core.settings import Settings
from tocsin.decisions.routing import parse_policy
from tocsin.schemas.alert import create_alert
from tocsin.schemas.messages import (
    Decision,
    DeliveryCommand,
    LifecycleAction,
    LifecycleEvent,
    Outcome,
)

KEY = "R0UT1NGKEY0123456789abcdef012345"
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def settings(**kw: Any) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


def command(severity: int = 1, fingerprint: str | None = None, lifecycle: str | None = None, **kw: Any) -> DeliveryCommand:
    a = create_alert(kw.pop("type", "daily_loss_limit"), severity, kw.pop("summary", "Loss over limit"),
                     fingerprint=fingerprint, event_timestamp=T0, account_id="A1", strategy_id="s1", **kw)
    return DeliveryCommand(delivery_id="d" * 32, alert=a, dedupe_key="k", receiver="pagerduty:default",
                           destination="pagerduty:default", suppressed_count=2, lifecycle=lifecycle)  # type: ignore[arg-type]


def test_settings_enable_the_default_and_named_destinations() -> None:
    assert "pagerduty:default" not in build_channels(settings(), parse_policy({}), env={})
    ch = build_channels(settings(pagerduty_routing_key=KEY, pagerduty_api_base="http://127.0.0.1:9/"),
                        parse_policy({}), env={})["pagerduty:default"]
    assert isinstance(ch, PagerDutyChannel) and ch.url == "http://127.0.0.1:9/v2/enqueue"
    assert KEY not in repr(ch) and ch.secrets() == [KEY]
    policy = parse_policy({"destinations": {"pagerduty:db": {"routing_key_env": "PD_DB", "api_base_env": "PD_BASE"},
                                            "pagerduty:off": {"routing_key_env": "PD_MISSING"}}})
    chans = build_channels(settings(), policy, env={"PD_DB": KEY, "PD_BASE": "http://127.0.0.1:8"})
    db = chans["pagerduty:db"]
    assert isinstance(db, PagerDutyChannel) and db.url == "http://127.0.0.1:8/v2/enqueue"
    assert "pagerduty:off" not in chans
    assert settings(pagerduty_routing_key="").pagerduty_routing_key is None


@pytest.mark.parametrize(("severity", "pd"), [(1, "critical"), (2, "error"), (3, "warning")])
def test_a_notification_is_a_trigger(severity: int, pd: str) -> None:
    cmd = command(severity, source="risk-engine", details={"loss": 12})
    event = render(cmd, KEY)
    assert event["routing_key"] == KEY and event["event_action"] == "trigger"
    assert event["dedup_key"] == cmd.alert.fingerprint == "daily_loss_limit:A1::s1"
    p = event["payload"]
    assert p["summary"] == f"[SEV{severity}] Loss over limit (2 similar suppressed)"
    assert (p["severity"], p["source"], p["class"], p["group"], p["component"]) == (
        pd, "risk-engine", "daily_loss_limit", "A1", "s1")
    assert p["timestamp"] == "2024-05-01T12:00:00Z"
    assert p["custom_details"]["details"] == {"loss": 12} and p["custom_details"]["alert_id"] == str(cmd.alert.alert_id)


def test_recoveries_and_relays_are_resolve_and_acknowledge_without_payload() -> None:
    recovered = command(type="component_recovered", fingerprint="component_recovered:redis", severity=3)
    assert render(recovered, KEY) == {"routing_key": KEY, "event_action": "resolve",
                                      "dedup_key": "component_unhealthy:redis"}  # the incident it resolves
    resolved = command(action="resolve", fingerprint="am:3f2a")
    assert render(resolved, KEY) == {"routing_key": KEY, "event_action": "resolve", "dedup_key": "am:3f2a"}
    ack = command(fingerprint="am:3f2a", lifecycle="acknowledge")
    assert render(ack, KEY) == {"routing_key": KEY, "event_action": "acknowledge", "dedup_key": "am:3f2a"}


def test_long_fingerprints_keep_one_dedup_key() -> None:
    fp = "x" * 300
    key = dedup_key(fp)
    assert len(key) == DEDUP_KEY_MAX and key.startswith("x" * 200)
    assert dedup_key("x" * 299 + "y") != key
    assert render(command(fingerprint=fp), KEY)["dedup_key"] == key
    assert render(command(fingerprint=fp, action="resolve"), KEY)["dedup_key"] == key
    assert dedup_key("short") == "short"


def test_a_long_summary_is_cut_to_pagerdutys_limit() -> None:
    cmd = command()
    cmd = cmd.model_copy(update={"alert": cmd.alert.model_copy(update={"summary": "é" * 2000})})
    assert len(render(cmd, KEY)["payload"]["summary"]) == 1024


# ------------------------------------------------------------------ relays of on-call actions


def decision(destinations: list[str], outcome: Outcome = Outcome.NOTIFY) -> Decision:
    a = create_alert("db_write_fail", 1, "db down", fingerprint="db:1", event_timestamp=T0, account_id="A1")
    return Decision(decision_id=uuid.uuid4(), alert=a, dedupe_key="db:1:0", outcome=outcome, reason="r",
                    window_start=T0, destinations=destinations)


def act(action: LifecycleAction, by: str = "ann") -> LifecycleEvent:
    return LifecycleEvent(fingerprint="db:1", action=action, by=by, note="on it", at=T0 + dt.timedelta(minutes=3))


def test_the_status_remembers_where_it_was_paged() -> None:
    s = fold(None, decision(["webhook:default", "pagerduty:default"]))
    assert s["paged"] == ["pagerduty:default"]
    s = fold(s, decision(["pagerduty:db"]))
    assert s["paged"] == ["pagerduty:db", "pagerduty:default"]
    assert fold(None, decision(["webhook:default"])).get("paged") is None


def test_an_acknowledge_on_a_paged_fingerprint_is_relayed_to_each_pagerduty_destination() -> None:
    status = fold(None, decision(["pagerduty:default", "pagerduty:db", "email:default"]))
    event = act(LifecycleAction.ACKNOWLEDGE)
    cmds = relays(status, event)
    assert [(c.destination, c.lifecycle, c.channel) for c in cmds] == [
        ("pagerduty:db", "acknowledge", "pagerduty"), ("pagerduty:default", "acknowledge", "pagerduty")]
    c = cmds[1]
    assert c.alert.fingerprint == "db:1" and str(c.alert.alert_id) == status["alert_id"]
    assert c.alert.details == {"by": "ann", "note": "on it"} and c.failover == []
    assert render(c, KEY) == {"routing_key": KEY, "event_action": "acknowledge", "dedup_key": "db:1"}
    assert [x.delivery_id for x in relays(status, event)] == [x.delivery_id for x in cmds]  # a replay: same ids
    assert relays(status, act(LifecycleAction.ACKNOWLEDGE))[0].delivery_id != cmds[0].delivery_id


@pytest.mark.parametrize(("status_of", "event", "relayed"), [
    (lambda: fold(None, decision(["pagerduty:default"])), act(LifecycleAction.RESOLVE), ["resolve"]),
    (lambda: fold(None, decision(["pagerduty:default"])), act(LifecycleAction.RESOLVE, by="tocsin:recovery"), []),
    (lambda: fold(None, decision(["pagerduty:default"])), act(LifecycleAction.DISMISS), []),
    (lambda: fold(None, decision(["webhook:default"])), act(LifecycleAction.ACKNOWLEDGE), []),
    (lambda: None, act(LifecycleAction.ACKNOWLEDGE), []),
    (lambda: {"paged": ["pagerduty:default"], "alert_id": str(uuid.uuid4()), "severity": None},
     act(LifecycleAction.ACKNOWLEDGE), []),  # a status it cannot describe: nothing, and no error
])
def test_what_is_relayed(status_of: Any, event: LifecycleEvent, relayed: list[str]) -> None:
    assert [c.lifecycle for c in relays(status_of(), event)] == relayed


def test_a_silenced_alert_is_not_paged_and_its_silenced_recovery_still_resolves_the_status() -> None:
    s = fold(None, decision(["pagerduty:default"]))
    notified = s["notified_alert_id"]
    s = fold(s, decision([], Outcome.SILENCED))
    assert s["notified_alert_id"] == notified and s["status"] == "active" and s["occurrences"] == 2
    a = create_alert("db_write_fail", 1, "db back", fingerprint="db:1", action="resolve",
                     event_timestamp=T0 + dt.timedelta(minutes=5))
    muted = Decision(decision_id=uuid.uuid4(), alert=a, dedupe_key="db:1:0:x", outcome=Outcome.SILENCED,
                     reason="s1", window_start=T0)
    assert fold(s, muted)["status"] == "resolved"
