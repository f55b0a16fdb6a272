"""The dashboard's chart queries (``*_over_time``) on chdb, with rows written at fixed times.

Each case is a window and a bucket size with the rows the query must answer, exactly: the
edges of the window (``since`` in, ``until`` out), the edges of a bucket (a minute's last
millisecond in it, the next minute's first out), a decision recorded twice (a replay:
counted once), outcomes no query names (``flapping``, ``inhibited``: the list is open), a
delivery whose retry succeeded in a later bucket (counted in the bucket of its first
attempt), attempts that never left Tocsin (not in the latency).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tocsin.infra.clickhouse.queries import (
    as_dicts,
    bind_params,
    query_doc,
    query_params,
    run_query,
)
from tocsin.infra.clickhouse.store import Store

from .test_clickhouse_queries import interp

pytestmark = pytest.mark.integration

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)
S = dt.timedelta(seconds=1)
MS = dt.timedelta(milliseconds=1)
CHARTS = ("alerts_by_severity_over_time", "alerts_by_outcome_over_time", "delivery_success_over_time",
          "latency_over_time")

#: (event time, severity, outcome) of each recorded decision
ALERTS: list[tuple[dt.datetime, int, str]] = [
    (NOW - 24 * H, 2, "notify"),            # the window's first millisecond: in
    (NOW - 24 * H - MS, 2, "notify"),       # just before it: out
    (NOW - 5 * H, 1, "notify"),
    (NOW - 5 * H + 10 * S, 1, "suppress"),
    (NOW - 5 * H + M - MS, 2, "suppress"),  # the minute's last millisecond
    (NOW - 5 * H + M, 1, "flapping"),       # the next minute's first
    (NOW - H, 3, "bypass"),
    (NOW - MS, 3, "inhibited"),
    (NOW, 1, "notify"),                     # until: out
]
#: recorded twice (a replay): counted once
REPLAYED = 3

#: (delivery, channel, status, started, latency ms) of each recorded attempt
ATTEMPTS: list[tuple[str, str, str, dt.datetime, float]] = [
    ("d1", "webhook", "failed", NOW - 2 * H, 100.0),
    ("d1", "webhook", "sent", NOW - 2 * H + 5 * S, 50.0),
    ("d2", "webhook", "dead", NOW - 2 * H + 30 * S, 300.0),
    ("d3", "email", "failed", NOW - 2 * H + M, 200.0),
    ("d3", "email", "sent", NOW - H + S, 80.0),               # its retry, in the next hour
    ("d4", "console", "rate_limited", NOW - 90 * M, 0.0),     # never left Tocsin: no latency
    ("d5", "console", "sent", NOW - 30 * M, 1.0),
    ("d5", "console", "skipped_duplicate", NOW - 29 * M, 0.0),  # not a delivery, no latency
    ("d6", "console", "sent", NOW, 2.0),                      # until: out
]


def _id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, "charts/" + "/".join(map(str, parts)))


def alert_rows(indexes: list[int]) -> list[dict[str, Any]]:
    return [{"decision_id": _id("d", i), "alert_id": _id("a", i), "fingerprint": f"fp{i}", "type": "t",
             "severity": ALERTS[i][1], "outcome": ALERTS[i][2], "reason": f"why {i}",
             "event_timestamp": ALERTS[i][0], "window_start": ALERTS[i][0], "decided_at": ALERTS[i][0]}
            for i in indexes]


def attempt_rows() -> list[dict[str, Any]]:
    return [{"attempt_id": _id("t", i), "delivery_id": d, "alert_id": _id("a", d), "fingerprint": d, "type": "t",
             "severity": 1, "channel": ch, "destination": f"{ch}:default", "attempt": i + 1, "status": st,
             "reason": st, "started_at": at, "finished_at": at + dt.timedelta(milliseconds=ms), "latency_ms": ms}
            for i, (d, ch, st, at, ms) in enumerate(ATTEMPTS)]


@pytest.fixture(scope="module")
def loaded(shared_store: Store) -> Iterator[Store]:
    from tocsin.infra.clickhouse.ops import TABLES

    for table in TABLES:
        shared_store.truncate(table)
    shared_store.insert("alerts", alert_rows(list(range(len(ALERTS)))))
    shared_store.insert("alerts", alert_rows([REPLAYED]))  # another insert: not merged yet, FINAL counts it once
    shared_store.insert("delivery_attempts", attempt_rows())
    yield shared_store


def q(store: Store, name: str, **params: Any) -> list[tuple[Any, ...]]:
    rows = as_dicts(*run_query(store, name, NOW, **params))
    return [tuple(r.values()) for r in rows]


ALERT_CASES = [
    pytest.param("alerts_by_severity_over_time", {}, [
        (NOW - 24 * H, 2, 1),
        (NOW - 5 * H, 1, 2),
        (NOW - 5 * H, 2, 1),
        (NOW - 5 * H + M, 1, 1),
        (NOW - H, 3, 1),
        (NOW - M, 3, 1),
    ], id="severity-per-minute"),
    pytest.param("alerts_by_severity_over_time", {"bucket_s": 3600}, [
        (NOW - 24 * H, 2, 1),
        (NOW - 5 * H, 1, 3),
        (NOW - 5 * H, 2, 1),
        (NOW - H, 3, 2),
    ], id="severity-per-hour"),
    pytest.param("alerts_by_severity_over_time", {"since": NOW - 5 * H + 30 * S, "until": NOW - 5 * H + M + MS}, [
        (NOW - 5 * H, 2, 1),
        (NOW - 5 * H + M, 1, 1),
    ], id="severity-narrow-window"),
    pytest.param("alerts_by_outcome_over_time", {}, [
        (NOW - 24 * H, "notify", 1),
        (NOW - 5 * H, "notify", 1),
        (NOW - 5 * H, "suppress", 2),
        (NOW - 5 * H + M, "flapping", 1),
        (NOW - H, "bypass", 1),
        (NOW - M, "inhibited", 1),
    ], id="outcome-per-minute"),
    pytest.param("alerts_by_outcome_over_time", {"bucket_s": 86400}, [
        (NOW - 36 * H, "notify", 1),        # days start at midnight UTC: 2025-05-31T00:00
        (NOW - 12 * H, "bypass", 1),
        (NOW - 12 * H, "flapping", 1),
        (NOW - 12 * H, "inhibited", 1),
        (NOW - 12 * H, "notify", 1),
        (NOW - 12 * H, "suppress", 2),
    ], id="outcome-per-day"),
    pytest.param("alerts_by_outcome_over_time", {"since": NOW + H, "until": NOW + 2 * H}, [], id="outcome-empty"),
]


@pytest.mark.parametrize(("name", "params", "expected"), ALERT_CASES)
def test_alerts_over_time(loaded: Store, name: str, params: dict[str, Any], expected: list[tuple[Any, ...]]) -> None:
    assert q(loaded, name, **params) == expected


SUCCESS_CASES = [
    # (bucket, channel, deliveries, delivered, dead, in_progress, success_rate)
    pytest.param({"bucket_s": 3600}, [
        (NOW - 2 * H, "console", 1, 0, 0, 1, 0.0),
        (NOW - 2 * H, "email", 1, 1, 0, 0, 1.0),   # delivered by its retry in the next hour
        (NOW - 2 * H, "webhook", 2, 1, 1, 0, 0.5),
        (NOW - H, "console", 1, 1, 0, 0, 1.0),
    ], id="per-hour"),
    pytest.param({}, [
        (NOW - 2 * H, "webhook", 2, 1, 1, 0, 0.5),
        (NOW - 2 * H + M, "email", 1, 1, 0, 0, 1.0),
        (NOW - 90 * M, "console", 1, 0, 0, 1, 0.0),
        (NOW - 30 * M, "console", 1, 1, 0, 0, 1.0),
    ], id="per-minute"),
    pytest.param({"since": NOW - H, "bucket_s": 3600}, [
        (NOW - H, "console", 1, 1, 0, 0, 1.0),     # d3's retry is not a first attempt
    ], id="last-hour"),
]


@pytest.mark.parametrize(("params", "expected"), SUCCESS_CASES)
def test_delivery_success_over_time(loaded: Store, params: dict[str, Any], expected: list[tuple[Any, ...]]) -> None:
    assert q(loaded, "delivery_success_over_time", **params) == expected


LATENCY_CASES = [
    # (bucket, channel, latencies of the attempts that reached out, sent)
    pytest.param({"bucket_s": 3600}, [
        (NOW - 2 * H, "email", [200.0], 0),
        (NOW - 2 * H, "webhook", [100.0, 50.0, 300.0], 1),
        (NOW - H, "console", [1.0], 1),
        (NOW - H, "email", [80.0], 1),
    ], id="per-hour"),
    pytest.param({"since": NOW - 2 * H + S, "until": NOW - 2 * H + M + S, "bucket_s": 60}, [
        (NOW - 2 * H, "webhook", [50.0, 300.0], 1),
        (NOW - 2 * H + M, "email", [200.0], 0),
    ], id="narrow-per-minute"),
]


@pytest.mark.parametrize(("params", "expected"), LATENCY_CASES)
def test_latency_over_time(loaded: Store, params: dict[str, Any], expected: list[tuple[Any, ...]]) -> None:
    rows = as_dicts(*run_query(loaded, "latency_over_time", NOW, **params))
    assert [(r["bucket"], r["channel"]) for r in rows] == [(b, c) for b, c, _, _ in expected]
    for r, (_, _, values, sent) in zip(rows, expected, strict=True):
        assert (r["attempts"], r["sent"], r["max_ms"]) == (len(values), sent, max(values))
        assert (r["p50_ms"], r["p95_ms"], r["p99_ms"]) == pytest.approx(
            (interp(values, 0.5), interp(values, 0.95), interp(values, 0.99)))


@pytest.mark.parametrize("name", CHARTS)
def test_chart_queries_take_a_window_and_a_bucket(name: str) -> None:
    assert list(query_params(name)) == ["bucket_s", "since", "until"]
    assert "Params:" in query_doc(name) and "FINAL" in query_doc(name)
    assert bind_params(name, NOW)["bucket_s"] == 60
    assert bind_params(name, NOW)["since"] == NOW - 24 * H
    with pytest.raises(ValueError, match="bucket_s: must be at least 1"):
        bind_params(name, NOW, bucket_s=0)
