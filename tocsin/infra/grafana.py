"""The analysts' Grafana dashboard (``docker/grafana/dashboards/tocsin.json``), made from the
named analyst queries so that it cannot drift from them.

Each table panel's SQL is a named query (``clickhouse/queries/*.sql``) with its parameters
replaced by the time picker's macros of the ClickHouse data source plugin
(``grafana-clickhouse-datasource``): ``{since:...}`` → ``$__fromTime_ms``, ``{until:...}`` →
``$__toTime_ms``. The time-series panels have SQL of their own (``SERIES``), run on chdb by
``tests/integration/test_grafana_queries.py``.

Write the file again after changing a query or a panel::

    python -m tocsin.infra.grafana > docker/grafana/dashboards/tocsin.json
"""

from __future__ import annotations

import json
import re
from typing import Any

from .clickhouse.queries import load_query

DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "tocsin-clickhouse"}
#: query parameter → what the panel puts in its place
PARAMS = {"since": "$__fromTime_ms", "until": "$__toTime_ms", "limit": "20", "bucket_s": "$__interval_s"}
_PARAM = re.compile(r"\{(\w+):[^}]+\}")

#: (title, named query, description) of the table panels, in order
TABLES: tuple[tuple[str, str, str], ...] = (
    ("Alerts by severity", "totals_24h_by_severity", "valid alerts, notified and suppressed, per severity"),
    ("Alerts by type", "totals_24h_by_type", "alerts per type and the delivery success rate of their notifications"),
    ("Noisiest fingerprints", "noisiest_fingerprints", "the problems the throttle suppressed most often"),
    ("Delivery success per channel", "delivery_success_rate", "deliveries (one alert to one destination) "
                                                               "that reached their destination"),
    ("Delivery latency per channel", "latency_by_channel", "p50, p95, p99 and max of a send, in ms"),
    ("Failing destinations", "failing_destinations", "destinations with failed, dead or circuit-open attempts"),
)

#: (title, SQL, description) of the time-series panels
SERIES: tuple[tuple[str, str, str], ...] = (
    ("Alerts by severity over time", """\
SELECT $__timeInterval_ms(event_timestamp) AS time, concat('SEV', toString(severity)) AS severity, count() AS alerts
FROM tocsin.alerts FINAL
WHERE $__timeFilter_ms(event_timestamp)
GROUP BY time, severity
ORDER BY time, severity""", "valid alerts per interval, by severity (event time)"),
    ("Notified and suppressed over time", """\
SELECT $__timeInterval_ms(event_timestamp) AS time,
       countIf(outcome IN ('notify', 'bypass')) AS notified,
       countIf(outcome = 'suppress') AS suppressed
FROM tocsin.alerts FINAL
WHERE $__timeFilter_ms(event_timestamp)
GROUP BY time
ORDER BY time""", "the throttle's noise reduction: notified (notify, bypass) against suppressed"),
    ("Delivery attempts over time", """\
SELECT $__timeInterval_ms(started_at) AS time, channel,
       countIf(status = 'sent') AS sent,
       countIf(status IN ('failed', 'dead')) AS failed
FROM tocsin.delivery_attempts FINAL
WHERE $__timeFilter_ms(started_at) AND status != 'skipped_duplicate'
GROUP BY time, channel
ORDER BY time, channel""", "attempts per interval and channel: sent against failed or dead"),
)


def panel_sql(name: str) -> str:
    """The named query ``name`` with its parameters as the panel's macros."""

    def one(m: re.Match[str]) -> str:
        if m.group(1) not in PARAMS:
            raise ValueError(f"{name}: parameter {m.group(1)!r} has no dashboard value")
        return PARAMS[m.group(1)]

    return _PARAM.sub(one, load_query(name)).strip()


def _target(sql: str, table: bool) -> dict[str, Any]:
    return {"refId": "A", "datasource": DATASOURCE, "editorType": "sql", "format": 1 if table else 0,
            "queryType": "table" if table else "timeseries", "rawSql": sql}


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    for i, (title, sql, description) in enumerate(SERIES):
        panels.append({"id": len(panels) + 1, "type": "timeseries", "title": title, "description": description,
                       "datasource": DATASOURCE, "gridPos": {"h": 8, "w": 8, "x": 8 * i, "y": y},
                       "targets": [_target(sql, table=False)],
                       "fieldConfig": {"defaults": {"custom": {"drawStyle": "bars", "stacking": {"mode": "normal"}}},
                                       "overrides": []},
                       "options": {"legend": {"displayMode": "list", "placement": "bottom"}}})
    y += 8
    for i, (title, name, description) in enumerate(TABLES):
        panels.append({"id": len(panels) + 1, "type": "table", "title": title,
                       "description": f"{description} (named query `{name}`)", "datasource": DATASOURCE,
                       "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": y + 8 * (i // 2)},
                       "targets": [_target(panel_sql(name), table=True)],
                       "fieldConfig": {"defaults": {}, "overrides": []}, "options": {"showHeader": True}})
    return {
        "uid": "tocsin-analysts", "title": "Tocsin: alerts and deliveries", "tags": ["tocsin"],
        "description": "Alert volumes by severity and type, noise, delivery success and latency per channel, "
                       "failing destinations (the analyst queries of tocsin/infra/clickhouse/queries)",
        "editable": False, "schemaVersion": 39, "version": 1, "refresh": "1m",
        "time": {"from": "now-24h", "to": "now"}, "timezone": "utc",
        "templating": {"list": []}, "annotations": {"list": []}, "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(render(), end="")
