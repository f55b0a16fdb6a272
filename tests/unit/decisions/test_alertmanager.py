"""Alertmanager's alerts as Tocsin events (decisions/alertmanager.py): the fingerprint against
prometheus/common's own test vectors, the mapping as tables of cases, and properties."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.decisions.alertmanager import (
    AlertmanagerMapping,
    BadAlert,
    fingerprint,
    map_alert,
    map_postable,
    map_webhook,
    normalize_type,
    parse_mapping,
    severity_of,
)
from tocsin.decisions.throttle import decide
from tocsin.errors import RoutingError
from tocsin.schemas.alert import TYPE_RE, AlertEvent
from tocsin.schemas.codec import dumps
from tocsin.schemas.messages import Outcome, delivery_id_for
from tocsin.schemas.validate import validate_raw

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
T0 = "2026-03-01T11:50:00Z"


def iso(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------- fingerprint

@pytest.mark.parametrize(("labels", "expected"), [
    ({"job": "foo", "severity": "warning"}, "9266ef3da838ad95"),
    # prometheus/common model/signature_test.go
    ({}, f"{14695981039346656037:016x}"),
    ({"name": "garland, briggs", "fear": "love is not enough"}, f"{5799056148416392346:016x}"),
    ({"first-label": "first-label-value"}, f"{5146282821936882169:016x}"),
    ({"first-label": "first-label-value", "second-label": "second-label-value"}, f"{3195800080984914717:016x}"),
    ({"first-label": "first-label-value", "second-label": "second-label-value",
      "third-label": "third-label-value"}, f"{13843036195897128121:016x}"),
])
def test_fingerprint_is_alertmanagers(labels: dict[str, str], expected: str) -> None:
    assert fingerprint(labels) == expected


def test_fingerprint_separates_names_from_values() -> None:
    # without the 0xff separators these two would hash the same bytes
    assert fingerprint({"ab": "c"}) != fingerprint({"a": "bc"})
    assert len(fingerprint({"a": "b"})) == 16


labels_st = st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=20), max_size=8)


@given(labels_st, st.randoms())
def test_the_fingerprint_ignores_label_order(labels: dict[str, str], rnd: Any) -> None:
    items = list(labels.items())
    rnd.shuffle(items)
    assert fingerprint(dict(items)) == fingerprint(labels)
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint(labels))


# --------------------------------------------------------------------------- normalizing

@pytest.mark.parametrize(("name", "expected"), [
    ("TargetUp", "target_up"),
    ("KubePodCrashLooping", "kube_pod_crash_looping"),
    ("HighCPUUsage", "high_cpu_usage"),
    ("node_filesystem_almost_full", "node_filesystem_almost_full"),
    ("disk full!", "disk_full"),
    ("Watchdog", "watchdog"),
    ("Café-Überlast", "cafe-uberlast"),
    ("a.b-c_d", "a.b-c_d"),
    ("__x__", "x"),
    ("日本", ""),
    ("", ""),
    ("A" * 100, "a" * 64),
    ("x" * 63 + "!y", "x" * 63),
])
def test_normalize_type(name: str, expected: str) -> None:
    assert normalize_type(name) == expected


@given(st.text(max_size=200))
def test_a_normalized_type_is_a_valid_type_or_empty(name: str) -> None:
    t = normalize_type(name)
    assert t == "" or TYPE_RE.match(t)


@pytest.mark.parametrize(("value", "expected"), [
    ("critical", 1), ("page", 1), ("CRITICAL ", 1), ("error", 2), ("warning", 2), ("Warning", 2),
    ("info", 3), ("none", 3), ("", 3), (None, 3), ("sev1", 1), ("2", 2),
])
def test_severity_label(value: str | None, expected: int) -> None:
    assert severity_of(value) == expected


# --------------------------------------------------------------------------- one alert

def am(**kw: Any) -> dict[str, Any]:
    alert: dict[str, Any] = {"labels": {"alertname": "HighLatency", "severity": "critical", "instance": "db1:9100",
                                        "job": "node"},
                             "annotations": {"summary": "p99 over 2 s", "description": "long text"},
                             "startsAt": T0, "endsAt": iso(NOW + dt.timedelta(minutes=4)),
                             "generatorURL": "http://prom:9090/graph?g0.expr=x"}
    alert.update(kw)
    return alert


def test_a_firing_alert() -> None:
    e = map_alert(am(), NOW, source="alertmanager_api")
    assert e.type == "high_latency" and e.severity == 1 and e.action == "trigger" and e.resolves is None
    assert e.fingerprint == fingerprint(am()["labels"])
    assert e.event_timestamp == dt.datetime(2026, 3, 1, 11, 50, tzinfo=dt.UTC)  # startsAt
    assert e.summary == "p99 over 2 s"
    assert e.entity.symbol == "db1:9100" and e.entity.strategy_id == "node" and e.entity.account_id is None
    assert e.details["labels"]["alertname"] == "HighLatency"
    assert e.details["annotations"]["description"] == "long text"
    assert e.details["generatorURL"].startswith("http://prom:9090") and e.details["status"] == "firing"
    assert e.source == "alertmanager_api"


def test_an_ended_alert_is_a_resolve_at_its_end() -> None:
    ends = NOW - dt.timedelta(minutes=1)
    e = map_alert(am(endsAt=iso(ends)), NOW, source="alertmanager_api")
    assert e.action == "resolve" and e.resolves == e.fingerprint and e.is_recovery
    assert e.event_timestamp == ends and e.details["status"] == "resolved"
    # an end exactly now is past too
    assert map_alert(am(endsAt=iso(NOW)), NOW, source="x").action == "resolve"


@pytest.mark.parametrize(("change", "field", "expected"), [
    ({"annotations": {"description": "only a description"}}, "summary", "only a description"),
    ({"annotations": {"summary": "  ", "description": "d"}}, "summary", "d"),
    ({"annotations": {}}, "summary", "HighLatency"),
    ({"labels": {"job": "x"}, "annotations": {}}, "summary", "alertmanager"),  # no alertname: the type
    ({"labels": {"job": "x"}}, "type", "alertmanager"),
    ({"labels": {"alertname": "日本"}}, "type", "alertmanager"),
    ({"labels": {"alertname": "A", "severity": "warning"}}, "severity", 2),
    ({"labels": {"alertname": "A", "severity": "bogus"}}, "severity", 3),
    ({"labels": {"alertname": "A"}}, "severity", 3),
    ({"annotations": {"summary": "s" * 400}}, "summary", "s" * 252 + "..."),
    ({"startsAt": None, "endsAt": None}, "event_timestamp", NOW),  # unset: now, as Alertmanager
    ({"startsAt": "0001-01-01T00:00:00Z", "endsAt": None}, "event_timestamp", NOW),  # Go's zero time: unset
    ({"startsAt": None}, "event_timestamp", NOW + dt.timedelta(minutes=4)),  # unset, with an end: the end
    ({"startsAt": None, "endsAt": iso(NOW - dt.timedelta(seconds=5))}, "event_timestamp",
     NOW - dt.timedelta(seconds=5)),
    ({"endsAt": "0001-01-01T00:00:00Z"}, "action", "trigger"),
    ({"endsAt": None}, "action", "trigger"),
    ({"startsAt": "2026-03-01T11:50:00.123456789Z"}, "event_timestamp",
     dt.datetime(2026, 3, 1, 11, 50, 0, 123456, tzinfo=dt.UTC)),  # Go's nanoseconds
])
def test_mapping_cases(change: dict[str, Any], field: str, expected: Any) -> None:
    assert getattr(map_alert(am(**change), NOW, source="x"), field) == expected


@pytest.mark.parametrize(("change", "reason"), [
    ({"labels": {}}, "at least one label pair required"),
    ({"labels": {"a": ""}}, "at least one label pair required"),  # empty values are left out
    ({"labels": None}, "at least one label pair required"),
    ({"labels": ["a"]}, "labels: expected an object"),
    ({"labels": {"a": 1}}, "labels.a: expected a string"),
    ({"annotations": {"summary": 3}}, "annotations.summary: expected a string"),
    ({"startsAt": "yesterday"}, "startsAt: 'yesterday' is not an RFC 3339 time"),
    ({"startsAt": "2026-03-01T11:50:00"}, "startsAt"),  # naive
    ({"startsAt": 17}, "startsAt: expected an RFC 3339 time"),
    ({"endsAt": "2026-03-01T11:00:00Z"}, "start time must be before end time"),
    ({"startsAt": "2026-03-01T13:00:00Z", "endsAt": None}, "ahead of this worker's clock"),
    ({"generatorURL": 5}, "generatorURL: expected a string"),
])
def test_refusals_say_why(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(BadAlert, match=re.escape(reason)):
        map_alert(am(**change), NOW, source="x")


def test_empty_labels_are_left_out_of_the_fingerprint_as_alertmanager_does() -> None:
    with_empty = am(labels={"alertname": "A", "job": "foo", "team": ""})
    assert map_alert(with_empty, NOW, source="x").fingerprint == fingerprint({"alertname": "A", "job": "foo"})


def test_long_entity_labels_are_cut() -> None:
    e = map_alert(am(labels={"alertname": "A", "instance": "i" * 1000}), NOW, source="x")
    assert e.entity.symbol is not None and len(e.entity.symbol) == 256
    assert e.details["labels"]["instance"] == "i" * 1000 or e.details.get("_truncated")


# --------------------------------------------------------------------------- re-sends

def test_a_resolved_resend_is_the_same_alert_and_never_delivered_twice() -> None:
    """Prometheus re-sends a resolved alert for 15 minutes, unchanged: the same alert_id, so the
    throttle's bypass gives the same dedupe key and delivery ids (delivery recognises them)."""
    resolved = am(endsAt=iso(NOW - dt.timedelta(minutes=2)))
    first = map_alert(resolved, NOW, source="x")
    again = map_alert(resolved, NOW + dt.timedelta(minutes=5), source="x")
    assert again.alert_id == first.alert_id and again.event_timestamp == first.event_timestamp
    v1, v2 = decide(None, first, 600), decide(None, again, 600)
    assert v1.outcome is v2.outcome is Outcome.BYPASS
    assert v1.dedupe_key == v2.dedupe_key
    assert delivery_id_for(v1.dedupe_key, "webhook:default", "webhook:default") == \
        delivery_id_for(v2.dedupe_key, "webhook:default", "webhook:default")


def test_a_firing_resend_is_a_repeat_in_the_first_ones_window() -> None:
    """While firing, each re-send carries a later endsAt (its validity): another alert of the same
    fingerprint at the same event time (startsAt), so the throttle suppresses and counts it."""
    first = map_alert(am(endsAt=iso(NOW + dt.timedelta(minutes=4))), NOW, source="x")
    later = NOW + dt.timedelta(minutes=7)
    again = map_alert(am(endsAt=iso(later + dt.timedelta(minutes=4))), later, source="x")
    assert again.event_timestamp == first.event_timestamp and again.alert_id != first.alert_id
    v1 = decide(None, first, 600)
    v2 = decide(v1.new_state, again, 600)
    assert (v1.outcome, v2.outcome, v2.suppressed_count) == (Outcome.NOTIFY, Outcome.SUPPRESS, 1)
    # the same request posted again (a client's retry) is the same alert: recognised
    retry = map_alert(am(endsAt=iso(NOW + dt.timedelta(minutes=4))), NOW, source="x")
    assert retry.alert_id == first.alert_id
    assert decide(v1.new_state, retry, 600).reason == "redelivered first event"


# --------------------------------------------------------------------------- requests

def test_a_request_takes_the_valid_alerts_and_names_the_others() -> None:
    out = map_postable([am(), am(labels={}), "nope", am(labels={"alertname": "B"})], NOW)
    assert [e.type for e in out.events] == ["high_latency", "b"]
    assert out.errors == ["alert 1: at least one label pair required",
                          "alert 2: expected an alert object, got str"]


def test_many_bad_alerts_make_a_bounded_answer() -> None:
    out = map_postable([{"labels": {}}] * 500, NOW)
    assert out.events == [] and len(out.errors) == 21 and out.errors[-1] == "... and 480 more invalid alerts"


@pytest.mark.parametrize("body", [{}, "x", 3, None])
def test_a_body_that_is_not_an_array_is_refused(body: Any) -> None:
    with pytest.raises(BadAlert, match="expected a JSON array"):
        map_postable(body, NOW)


def webhook(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {"version": "4", "groupKey": "{}:{alertname=\"A\"}", "status": "firing", "receiver": "tocsin",
            "externalURL": "http://am:9093", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "truncatedAlerts": 0, "alerts": list(alerts)}


def test_webhook_alerts_keep_their_own_fingerprint_and_status() -> None:
    firing = {"status": "firing", "labels": {"alertname": "A", "severity": "warning"}, "annotations": {},
              "startsAt": T0, "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": "a1b2c3d4e5f60718"}
    resolved = {**firing, "status": "resolved", "endsAt": iso(NOW - dt.timedelta(seconds=30)),
                "labels": {"alertname": "B"}, "fingerprint": "0011223344556677"}
    out = map_webhook(webhook(firing, resolved), NOW)
    assert out.errors == []
    a, b = out.events
    assert (a.fingerprint, a.action, a.severity, a.source) == ("a1b2c3d4e5f60718", "trigger", 2, "alertmanager_webhook")
    assert (b.fingerprint, b.action, b.resolves) == ("0011223344556677", "resolve", "0011223344556677")
    assert b.event_timestamp == NOW - dt.timedelta(seconds=30)
    assert a.details["receiver"] == "tocsin" and a.details["groupKey"].startswith("{}")
    # no fingerprint given: the labels' own
    del firing["fingerprint"]
    assert map_webhook(webhook(firing), NOW).events[0].fingerprint == fingerprint(firing["labels"])
    # the webhook's status decides, whatever endsAt says
    assert map_webhook(webhook({**firing, "status": "resolved"}), NOW).events[0].action == "resolve"


@pytest.mark.parametrize(("payload", "reason"), [
    ([], "expected a webhook payload object"),
    ({"version": "4"}, "alerts: expected an array"),
    ({"alerts": {}}, "alerts: expected an array"),
    ({"alerts": [], "receiver": 3}, "receiver: expected a string"),
])
def test_a_webhook_payload_that_is_not_one_is_refused(payload: Any, reason: str) -> None:
    with pytest.raises(BadAlert, match=re.escape(reason)):
        map_webhook(payload, NOW)


@pytest.mark.parametrize(("alert", "reason"), [
    ({"status": "pending", "labels": {"a": "b"}}, "status: 'pending' is not firing or resolved"),
    ({"status": 1, "labels": {"a": "b"}}, "status: expected a string"),
    ({"fingerprint": "", "labels": {"a": "b"}}, "fingerprint: expected a non-empty string"),
    ({"fingerprint": "f" * 600, "labels": {"a": "b"}}, "fingerprint: over 512"),
])
def test_webhook_alert_refusals(alert: dict[str, Any], reason: str) -> None:
    out = map_webhook(webhook(alert), NOW)
    assert out.events == [] and reason in out.errors[0]


# --------------------------------------------------------------------------- properties

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=10))
any_labels = st.one_of(json_leaf, st.dictionaries(st.text(max_size=10), st.one_of(st.text(max_size=30), json_leaf),
                                                  max_size=6))
times = st.one_of(st.none(), st.integers(), st.text(max_size=5),
                  st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31),
                               timezones=st.just(dt.UTC)).map(iso))


@settings(max_examples=300)
@given(labels=any_labels, annotations=any_labels, starts=times, ends=times)
def test_any_alert_maps_to_a_valid_event_or_a_reason(labels: Any, annotations: Any, starts: Any, ends: Any) -> None:
    raw = {"labels": labels, "annotations": annotations, "startsAt": starts, "endsAt": ends}
    try:
        e = map_alert(raw, NOW, source="alertmanager_api")
    except BadAlert as exc:
        assert str(exc)
        return
    # what the ingest sends is what the throttle accepts, unchanged
    back = validate_raw(dumps(e), e.fingerprint.encode(), ("t", 0, 0), now=NOW)
    assert isinstance(back, AlertEvent) and back == e
    assert TYPE_RE.match(e.type) and e.severity in (1, 2, 3)
    assert e.fingerprint == fingerprint({k: v for k, v in labels.items() if v != ""})
    assert map_alert(raw, NOW, source="alertmanager_api").alert_id == e.alert_id  # deterministic


@given(st.lists(st.dictionaries(st.sampled_from(["labels", "annotations", "startsAt"]), any_labels), max_size=5))
def test_any_request_body_answers(body: list[dict[str, Any]]) -> None:
    out = map_postable(orjson.loads(orjson.dumps(body)), NOW)
    assert len(out.events) + len(out.errors) == len(body)
    assert all(out.errors)


# --------------------------------------------------------------------------- configuration

def test_the_mapping_is_configurable() -> None:
    m = parse_mapping({
        "type_label": "rule", "severity_label": "priority", "severities": {"P1": 1, "P2": 2},
        "default_severity": 2, "summary_annotations": ["title"],
        "entity": {"symbol": "pod", "strategy_id": "", "account_id": "tenant"}})
    assert m.severities["p1"] == 1 and m.severities["critical"] == 1  # added to the defaults
    assert dict(m.entity) == {"account_id": "tenant", "symbol": "pod"}
    raw = am(labels={"rule": "DiskFull", "priority": "p1", "pod": "web-1", "job": "j", "tenant": "acme"},
             annotations={"title": "disk", "summary": "not this"})
    e = map_alert(raw, NOW, m, source="x")
    assert (e.type, e.severity, e.summary) == ("disk_full", 1, "disk")
    assert (e.entity.symbol, e.entity.strategy_id, e.entity.account_id) == ("web-1", None, "acme")
    assert map_alert(am(labels={"rule": "X", "priority": "whatever"}), NOW, m, source="x").severity == 2


@pytest.mark.parametrize(("doc", "message"), [
    ({"bogus": 1}, "ingest.alertmanager.bogus: unknown key"),
    ({"severities": {"p1": 4}}, "ingest.alertmanager.severities.p1: 1, 2 or 3"),
    ({"severities": {"p1": True}}, "severities.p1: 1, 2 or 3"),
    ({"severities": []}, "ingest.alertmanager.severities: a table"),
    ({"default_severity": 0}, "default_severity: 1, 2 or 3"),
    ({"type_label": "not a label"}, "type_label: a label name"),
    ({"default_type": "Bad Type"}, "default_type: a type"),
    ({"entity": {"venue": "x"}}, "entity.venue: not an entity field"),
    ({"entity": {"symbol": 3}}, "entity.symbol: a label name"),
    ({"summary_annotations": "summary"}, "summary_annotations: a list"),
    ([], "ingest.alertmanager: expected a table"),
])
def test_bad_mapping_configuration_names_the_key(doc: Any, message: str) -> None:
    with pytest.raises(RoutingError) as err:
        parse_mapping(doc)
    assert err.value.setting == "TOCSIN_ROUTING_FILE" and message in str(err.value)


def test_mapping_defaults_are_the_documented_ones() -> None:
    m = AlertmanagerMapping()
    assert parse_mapping({}) == m
    assert dict(m.entity) == {"account_id": "account_id", "symbol": "instance", "strategy_id": "job"}
    assert (m.type_label, m.severity_label, m.summary_annotations) == ("alertname", "severity",
                                                                       ("summary", "description"))
