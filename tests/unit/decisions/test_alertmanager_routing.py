"""The routing file's ``[ingest.alertmanager]`` table (decisions/routing.py → decisions/alertmanager.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tocsin.decisions.alertmanager import DEFAULT_MAPPING, map_alert
from tocsin.decisions.routing import parse_policy
from tocsin.errors import RoutingError

from .test_alertmanager import NOW, am


def test_the_routing_file_overrides_the_mapping() -> None:
    policy = parse_policy({"ingest": {"alertmanager": {
        "type_label": "rule", "severity_label": "priority", "severities": {"P1": 1, "P2": 2},
        "default_severity": 2, "summary_annotations": ["title"],
        "entity": {"symbol": "pod", "strategy_id": "", "account_id": "tenant"}}}})
    m = policy.alertmanager
    assert m.severities["p1"] == 1 and m.severities["critical"] == 1  # added to the defaults
    assert dict(m.entity) == {"account_id": "tenant", "symbol": "pod"}
    raw = am(labels={"rule": "DiskFull", "priority": "p1", "pod": "web-1", "job": "j", "tenant": "acme"},
             annotations={"title": "disk", "summary": "not this"})
    e = map_alert(raw, NOW, m, source="x")
    assert (e.type, e.severity, e.summary) == ("disk_full", 1, "disk")
    assert (e.entity.symbol, e.entity.strategy_id, e.entity.account_id) == ("web-1", None, "acme")
    assert map_alert(am(labels={"rule": "X", "priority": "whatever"}), NOW, m, source="x").severity == 2
    assert parse_policy({}).alertmanager == DEFAULT_MAPPING


@pytest.mark.parametrize(("doc", "message"), [
    ({"ingest": {"alertmanager": {"bogus": 1}}}, "ingest.alertmanager.bogus: unknown key"),
    ({"ingest": {"pagerduty": {}}}, "ingest.pagerduty: unknown key"),
    ({"ingest": {"alertmanager": {"severities": {"p1": 4}}}}, "ingest.alertmanager.severities.p1: 1, 2 or 3"),
    ({"ingest": {"alertmanager": {"severities": {"p1": True}}}}, "severities.p1: 1, 2 or 3"),
    ({"ingest": {"alertmanager": {"severities": []}}}, "ingest.alertmanager.severities: a table"),
    ({"ingest": {"alertmanager": {"default_severity": 0}}}, "default_severity: 1, 2 or 3"),
    ({"ingest": {"alertmanager": {"type_label": "not a label"}}}, "type_label: a label name"),
    ({"ingest": {"alertmanager": {"default_type": "Bad Type"}}}, "default_type: a type"),
    ({"ingest": {"alertmanager": {"entity": {"venue": "x"}}}}, "entity.venue: not an entity field"),
    ({"ingest": {"alertmanager": {"entity": {"symbol": 3}}}}, "entity.symbol: a label name"),
    ({"ingest": {"alertmanager": {"summary_annotations": "summary"}}}, "summary_annotations: a list"),
    ({"ingest": {"alertmanager": []}}, "ingest.alertmanager: expected a table"),
    ({"ingest": []}, "ingest: expected a table"),
])
def test_bad_mapping_configuration_names_the_key(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(RoutingError) as err:
        parse_policy(doc)
    assert err.value.setting == "TOCSIN_ROUTING_FILE" and message in str(err.value)
