"""PagerDuty Events v2 events posted to Tocsin (decisions/pagerduty.py, the ``POST /v2/enqueue``
ingest): tables of cases and properties; and the ingest clients' rate limits
(decisions/ingest_limits.py). The PagerDuty *channel* is test_pagerduty_channel.py's."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.decisions.ingest_limits import ClientLimits, client_key
from tocsin.decisions.pagerduty import PdEvent, acknowledge_event, parse_event, resolve_alert
from tocsin.decisions.throttle import decide
from tocsin.schemas.alert import AlertEvent
from tocsin.schemas.codec import dumps
from tocsin.schemas.messages import LifecycleAction, Outcome
from tocsin.schemas.validate import validate_raw

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
KEY = "R" * 32


def trigger(**kw: Any) -> dict[str, Any]:
    payload = {"summary": "DB replica lag 45 s", "source": "db2.example.com", "severity": "error",
               "timestamp": "2026-03-01T11:59:30.000+0000", "component": "postgres", "group": "prod-db",
               "class": "ReplicationLag", "custom_details": {"lag_s": 45, "threshold_s": 30}}
    payload.update(kw.pop("payload", {}))
    return {"routing_key": KEY, "event_action": "trigger", "dedup_key": "db2-lag", "payload": payload,
            "links": [{"href": "https://grafana/d/1", "text": "dashboard"}],
            "images": [{"src": "https://img/1.png", "alt": "graph"}], "client": "Zabbix", **kw}


def test_a_trigger() -> None:
    ev = parse_event(trigger(), NOW)
    assert isinstance(ev, PdEvent) and ev.action == "trigger" and not ev.generated
    a = ev.alert
    assert a is not None
    assert (a.fingerprint, a.type, a.severity, a.summary) == ("db2-lag", "replication_lag", 2, "DB replica lag 45 s")
    assert a.event_timestamp == dt.datetime(2026, 3, 1, 11, 59, 30, tzinfo=dt.UTC)
    assert a.details["custom_details"] == {"lag_s": 45, "threshold_s": 30}
    assert a.details["source"] == "db2.example.com" and a.details["component"] == "postgres"
    assert a.details["links"] == [{"href": "https://grafana/d/1", "text": "dashboard"}]
    assert a.details["images"] == [{"src": "https://img/1.png", "alt": "graph"}]
    assert a.source == "pagerduty" and a.action == "trigger"
    # what the ingest sends is what the throttle accepts, unchanged
    assert validate_raw(dumps(a), a.fingerprint.encode(), ("t", 0, 0), now=NOW) == a


@pytest.mark.parametrize(("severity", "expected"), [("critical", 1), ("error", 2), ("warning", 2), ("info", 3)])
def test_severities(severity: str, expected: int) -> None:
    ev = parse_event(trigger(payload={"severity": severity}), NOW)
    assert isinstance(ev, PdEvent) and ev.alert is not None and ev.alert.severity == expected


@pytest.mark.parametrize(("change", "field", "expected"), [
    ({"payload": {"class": None}}, "type", "pagerduty"),
    ({"payload": {"class": "!!!"}}, "type", "pagerduty"),
    ({"payload": {"timestamp": None}}, "event_timestamp", NOW),
    ({"payload": {"summary": "x" * 1024}}, "summary", "x" * 252 + "..."),
])
def test_trigger_cases(change: dict[str, Any], field: str, expected: Any) -> None:
    ev = parse_event(trigger(**change), NOW)
    assert isinstance(ev, PdEvent) and getattr(ev.alert, field) == expected


def test_a_long_summary_is_kept_whole_in_the_details() -> None:
    ev = parse_event(trigger(payload={"summary": "y" * 1000}), NOW)
    assert isinstance(ev, PdEvent) and ev.alert is not None and ev.alert.details["summary"] == "y" * 1000


def test_a_trigger_without_a_key_gets_a_fresh_one() -> None:
    keys = iter(["k1", "k2"])
    body = trigger()
    del body["dedup_key"]
    a, b = parse_event(body, NOW, lambda: next(keys)), parse_event(body, NOW, lambda: next(keys))
    assert isinstance(a, PdEvent) and isinstance(b, PdEvent)
    assert (a.dedup_key, a.generated, b.dedup_key) == ("k1", True, "k2")
    assert a.alert is not None and a.alert.fingerprint == "k1"
    default = parse_event({**body, "dedup_key": ""}, NOW)
    assert isinstance(default, PdEvent) and len(default.dedup_key) == 32 and default.generated


def test_the_same_trigger_posted_again_is_the_same_alert() -> None:
    a, b = parse_event(trigger(), NOW), parse_event(trigger(), NOW + dt.timedelta(seconds=5))
    assert isinstance(a, PdEvent) and isinstance(b, PdEvent) and a.alert and b.alert
    assert a.alert.alert_id == b.alert.alert_id
    # without a timestamp each is a new occurrence of the key: a repeat in its window
    no_ts = trigger(payload={"timestamp": None})
    c, d = parse_event(no_ts, NOW), parse_event(no_ts, NOW + dt.timedelta(seconds=5))
    assert isinstance(c, PdEvent) and isinstance(d, PdEvent) and c.alert and d.alert
    v1 = decide(None, c.alert, 600)
    assert decide(v1.new_state, d.alert, 600).outcome is Outcome.SUPPRESS


@pytest.mark.parametrize(("body", "error"), [
    ({"event_action": "trigger"}, "'routing_key' is missing or blank"),
    (trigger(routing_key=""), "'routing_key' is missing or blank"),
    (trigger(routing_key=5), "'routing_key' must be a string"),
    (trigger(event_action="explode"), "'event_action' is invalid (must be one of trigger, acknowledge, resolve)"),
    (trigger(event_action=None), "'event_action' is missing or blank"),
    (trigger(event_action=["trigger"]), "'event_action' is invalid"),
    (trigger(dedup_key="k" * 256), "'dedup_key' is too long (at most 255 characters)"),
    (trigger(dedup_key=7), "'dedup_key' must be a string"),
    (trigger(payload={"summary": ""}), "'payload.summary' is missing or blank"),
    (trigger(payload={"summary": "s" * 1025}), "'payload.summary' is too long (at most 1024 characters)"),
    (trigger(payload={"source": None}), "'payload.source' is missing or blank"),
    (trigger(payload={"severity": "fatal"}), "'payload.severity' is invalid (must be one of critical, error, warning, info)"),
    (trigger(payload={"severity": ["info"]}), "'payload.severity' is invalid"),
    (trigger(payload={"severity": None}), "'payload.severity' is missing or blank"),
    (trigger(payload={"timestamp": "yesterday"}), "'payload.timestamp' is not an ISO 8601 time"),
    (trigger(payload={"timestamp": "2026-03-01T11:59:30"}), "'payload.timestamp' is not an ISO 8601 time"),
    (trigger(payload={"timestamp": "2026-03-01T13:00:00Z"}), "'payload.timestamp' is more than 300 s ahead"),
    (trigger(payload={"component": 1}), "'payload.component' must be a string"),
    ({"routing_key": KEY, "event_action": "trigger"}, "'payload' is missing or not an object"),
    (trigger(links="x"), "'links' must be an array"),
    (trigger(links=[{"text": "no href"}]), "'links[0].href' is missing or blank"),
    (trigger(images=[{"alt": "no src"}]), "'images[0].src' is missing or blank"),
    ({"routing_key": KEY, "event_action": "acknowledge"}, "'dedup_key' is missing or blank (required to acknowledge)"),
    ({"routing_key": KEY, "event_action": "resolve", "dedup_key": " "}, "'dedup_key' is missing or blank"),
    ([], "Event object must be a JSON object"),
])
def test_invalid_events_list_every_error(body: Any, error: str) -> None:
    out = parse_event(body, NOW)
    assert isinstance(out, list) and any(error in e for e in out), out


def test_all_errors_at_once() -> None:
    out = parse_event({"routing_key": "", "event_action": "trigger", "payload": {"severity": "bad"}}, NOW)
    assert isinstance(out, list) and len(out) == 4  # routing_key, summary, source, severity


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
def test_acknowledge_and_resolve_need_only_the_key(action: str) -> None:
    ev = parse_event({"routing_key": KEY, "event_action": action, "dedup_key": "db2-lag", "client": "cli"}, NOW)
    assert ev == PdEvent(action, "db2-lag", client="cli")


def test_a_resolve_takes_what_the_status_knows_and_is_the_same_within_a_window() -> None:
    known = {"type": "replication_lag", "severity": 2, "summary": "DB replica lag 45 s", "alert_id": None}
    r = resolve_alert("db2-lag", NOW, 600, known)
    assert (r.action, r.resolves, r.fingerprint, r.type, r.severity, r.summary) == (
        "resolve", "db2-lag", "db2-lag", "replication_lag", 2, "DB replica lag 45 s")
    assert r.is_recovery and decide(None, r, 600).outcome is Outcome.BYPASS
    again = resolve_alert("db2-lag", NOW + dt.timedelta(seconds=30), 600, known)
    assert again.alert_id == r.alert_id  # the same delivery ids: delivered once
    assert decide(None, again, 600).dedupe_key == decide(None, r, 600).dedupe_key
    later = resolve_alert("db2-lag", NOW + dt.timedelta(seconds=600), 600, known)
    assert later.alert_id != r.alert_id
    unknown = resolve_alert("nobody", NOW, 600, None)
    assert (unknown.type, unknown.severity, unknown.summary) == ("pagerduty", 3, "nobody resolved")


def test_an_acknowledge_is_a_lifecycle_event() -> None:
    ack = acknowledge_event("db2-lag", NOW, {"alert_id": "6d1f3c2e-8a44-4c57-9a0e-2b7f51f0c9d1"}, "Zabbix")
    assert (ack.fingerprint, ack.action, ack.by, ack.at) == ("db2-lag", LifecycleAction.ACKNOWLEDGE,
                                                            "pagerduty:Zabbix", NOW)
    assert str(ack.alert_id) == "6d1f3c2e-8a44-4c57-9a0e-2b7f51f0c9d1"
    assert acknowledge_event("k", NOW, None).by == "pagerduty"


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                                     st.text(max_size=20)),
                           lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=8), c,
                                                                                        max_size=3)), max_leaves=10)
events = st.fixed_dictionaries({}, optional={
    "routing_key": st.one_of(st.just(KEY), json_values),
    "event_action": st.one_of(st.sampled_from(["trigger", "acknowledge", "resolve"]), json_values),
    "dedup_key": json_values,
    "payload": st.one_of(json_values, st.fixed_dictionaries({}, optional={
        "summary": json_values, "source": json_values,
        "severity": st.one_of(st.sampled_from(["critical", "error", "warning", "info"]), json_values),
        "timestamp": st.one_of(st.just("2026-03-01T11:00:00Z"), json_values),
        "custom_details": json_values, "class": json_values})),
    "links": json_values, "images": json_values})


@settings(max_examples=400)
@given(events)
def test_any_event_is_valid_or_says_why(body: dict[str, Any]) -> None:
    out = parse_event(body, NOW)
    if isinstance(out, list):
        assert out and all(isinstance(e, str) and e for e in out)
        return
    assert out.action in ("trigger", "acknowledge", "resolve") and 0 < len(out.dedup_key) <= 255
    if out.action == "trigger":
        assert isinstance(out.alert, AlertEvent)
        assert validate_raw(dumps(out.alert), None, ("t", 0, 0), now=NOW) == out.alert


# --------------------------------------------------------------------------- rate limits

@pytest.mark.parametrize(("rate", "burst", "at", "expected"), [
    # a burst of 3, then one a second
    (1.0, 3, [0, 0, 0, 0], [0, 0, 0, 1.0]),
    (1.0, 3, [0, 0, 0, 0.5], [0, 0, 0, 0.5]),
    (1.0, 3, [0, 0, 0, 1.0, 1.0], [0, 0, 0, 0, 1.0]),
    (2.0, 1, [0, 0.1, 0.5, 0.6], [0, 0.4, 0, 0.4]),
    (10.0, 2, [0, 0, 0, 5, 5, 5], [0, 0, 0.1, 0, 0, 0.1]),  # refilled up to the burst, never beyond
])
def test_a_client_gets_its_burst_then_its_rate(rate: float, burst: int, at: list[float],
                                               expected: list[float]) -> None:
    limits = ClientLimits(rate, burst)
    got = [limits.take("c", t) for t in at]
    assert got == pytest.approx(expected, abs=1e-6)


def test_clients_have_their_own_buckets_and_are_bounded() -> None:
    limits = ClientLimits(1.0, 1, max_clients=3)
    assert limits.take("a", 0) == 0 and limits.take("a", 0) > 0
    assert limits.take("b", 0) == 0  # another client is not limited by a's requests
    for c in ("c", "d"):
        limits.take(c, 0)
    assert len(limits) == 3  # "a", the least recently used, was forgotten
    assert limits.take("a", 0) == 0


@pytest.mark.parametrize(("a", "b", "same"), [
    (("10.0.0.1", "Bearer x"), ("10.0.0.1", "Bearer x"), True),
    (("10.0.0.1", "Bearer x"), ("10.0.0.2", "Bearer x"), False),
    (("10.0.0.1", "Basic cHJvbS1ldTp0"), ("10.0.0.1", "Basic cHJvbS11czp0"), False),
    (("10.0.0.1", None), ("10.0.0.1", ""), True),
])
def test_a_client_is_its_address_and_credential(a: tuple[str, str | None], b: tuple[str, str | None],
                                                same: bool) -> None:
    assert (client_key(*a) == client_key(*b)) is same
    assert "Bearer" not in client_key(*a)  # the credential itself is never kept


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0), (float("inf"), 1)])
def test_bad_limits_fail_at_start(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        ClientLimits(rate, burst)


@given(st.lists(st.floats(0, 0.5), min_size=1, max_size=60), st.integers(1, 5), st.floats(0.5, 20))
def test_never_more_than_burst_plus_rate_times_time(gaps: list[float], burst: int, rate: float) -> None:
    limits = ClientLimits(rate, burst)
    times = list(itertools.accumulate(gaps))
    allowed = sum(limits.take("c", t) == 0 for t in times)
    assert allowed <= burst + rate * (times[-1] - times[0]) + 1e-6
