"""Every analyst query on a real ClickHouse engine, over data built from the real models.

The same suite runs on chdb (embedded, always) and on a ClickHouse server in Docker
(testcontainers; skipped with its reason when no Docker engine is reachable). The data are
recorded through the Recorder and then partly replayed in other batches, so every value
asserted here also proves the queries count exactly before any merge.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tocsin.agents.recorder import Recorder
from tocsin.infra.clickhouse.queries import as_dicts, query_names, run_query, stats_24h
from tocsin.infra.clickhouse.store import Store, open_store
from tocsin.schemas.messages import AttemptStatus as S
from tocsin.schemas.messages import LifecycleAction, Outcome

from ..support.samples import attempt, decision, lifecycle, wire

pytestmark = pytest.mark.integration

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)
SEC = dt.timedelta(seconds=1)
FP_A = "position_limit_hit:acc1:AAPL:s1"
FP_B = "order_rejected:acc1:MSFT:s2"
FP_C = "component_unhealthy:redis"


def dataset() -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    """Four fingerprints in the last 24 h, one alert outside it; their attempts and actions."""
    msgs: list[tuple[str, Any]] = []
    a0 = NOW - 5 * H
    a = [decision(type="position_limit_hit", severity=1, at=a0 + i * M, n=i, account_id="acc1", symbol="AAPL",
                  strategy_id="s1", outcome=Outcome.NOTIFY if i == 0 else Outcome.SUPPRESS, suppressed_count=i,
                  destinations=["email:risk", "webhook:default"] if i == 0 else [],
                  details={"limit": 100, "qty": 120 + i})
         for i in range(5)]
    b0 = NOW - 3 * H
    b = [decision(type="order_rejected", severity=2, at=b0 + i * M, n=i, account_id="acc1", symbol="MSFT",
                  strategy_id="s2", outcome=Outcome.NOTIFY if i == 0 else Outcome.SUPPRESS, suppressed_count=i,
                  destinations=["webhook:default"] if i == 0 else [])
         for i in range(3)]
    c = decision(type="component_unhealthy", severity=1, at=NOW - 2 * H, n=0, fingerprint=FP_C,
                 outcome=Outcome.NOTIFY, destinations=["email:ops", "console:default"])
    r = decision(type="component_recovered", severity=3, at=NOW - 1 * H, n=0, fingerprint="component_recovered:redis",
                 outcome=Outcome.BYPASS, destinations=["console:default"])
    old = decision(type="order_filled", severity=3, at=NOW - 30 * H, n=0, outcome=Outcome.NOTIFY,
                   destinations=["console:default"])
    assert a[0].alert.fingerprint == FP_A and b[0].alert.fingerprint == FP_B and r.alert.resolves == FP_C
    for d in [*a, *b, c, r, old]:
        msgs.append(("decisions", d))
    attempts = [
        attempt(a[0], "email:risk", 1, S.FAILED, a0 + SEC, 120.0, 451, "mailbox busy"),
        attempt(a[0], "email:risk", 2, S.SENT, a0 + 3 * SEC, 80.0, 250),
        attempt(a[0], "webhook:default", 1, S.SENT, a0 + SEC, 40.0, 200),
        attempt(a[0], "webhook:default", 2, S.SKIPPED_DUPLICATE, a0 + 60 * SEC, 0.0),
        attempt(b[0], "webhook:default", 1, S.FAILED, b0 + SEC, 300.0, 500, "server error"),
        attempt(b[0], "webhook:default", 2, S.FAILED, b0 + 3 * SEC, 310.0, 500, "server error"),
        attempt(b[0], "webhook:default", 3, S.DEAD, b0 + 7 * SEC, 320.0, 500, "server error 3"),
        attempt(c, "email:ops", 1, S.SENT, NOW - 2 * H + SEC, 90.0, 250),
        attempt(c, "console:default", 1, S.SENT, NOW - 2 * H + SEC, 1.0),
        attempt(r, "console:default", 1, S.SENT, NOW - H + SEC, 2.0),
        attempt(old, "console:default", 1, S.SENT, NOW - 30 * H + SEC, 3.0),
    ]
    msgs += [("attempts", x) for x in attempts]
    msgs.append(("lifecycle", lifecycle(FP_A, LifecycleAction.ACKNOWLEDGE, NOW - 4 * H, by="alice")))
    msgs.append(("lifecycle", lifecycle(FP_B, LifecycleAction.RESOLVE, NOW - 10 * H, by="bob")))
    ids = {"A": [d.alert.alert_id for d in a], "B": [d.alert.alert_id for d in b], "C": c.alert.alert_id,
           "R": r.alert.alert_id, "attempts_A": [x.attempt_id for x in attempts[:4]]}
    return [(k, wire(m)) for k, m in msgs], ids


# --------------------------------------------------------------------------- targets


def _docker_reason() -> str | None:
    try:
        import docker  # type: ignore[import-untyped]
    except ImportError:
        return "the docker SDK is not installed"
    client = None
    try:
        client = docker.from_env(timeout=3)
        client.ping()
    except Exception as exc:
        return f"no Docker engine reachable ({type(exc).__name__}): the ClickHouse server suite needs one"
    finally:
        if client is not None:
            client.close()
    return None


@pytest.fixture(scope="module", params=["chdb", "server"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "chdb":
        yield f"chdb://{tmp_path_factory.mktemp('chq')}"
        return
    reason = _docker_reason()
    if reason:
        pytest.skip(reason)
    from testcontainers.community.clickhouse import ClickHouseContainer

    with ClickHouseContainer("clickhouse/clickhouse-server:latest", username="tocsin", password="s3cret") as ch:
        host, port = ch.get_container_host_ip(), ch.get_exposed_port(8123)
        yield f"http://tocsin:s3cret@{host}:{port}/tocsin"


async def _record(store: Store, msgs: list[tuple[str, dict[str, Any]]]) -> None:
    rec = Recorder(store)
    assert await rec.record_batch(msgs) == []
    # a replay in other batches: the same rows again, under other dedup tokens
    assert await rec.record_batch(msgs[::2]) == []
    assert await rec.record_batch(msgs[1::2]) == []
    assert rec.rows_inserted == 2 * len(msgs)


@pytest.fixture(scope="module")
def loaded(target: str) -> Iterator[tuple[Store, dict[str, Any]]]:
    store = open_store(target)
    store.migrate()
    for table in ("alerts", "delivery_attempts", "alert_lifecycle", "delivery_stats_1m"):
        store.truncate(table)
    msgs, ids = dataset()
    asyncio.run(_record(store, msgs))
    yield store, ids
    store.close()


@pytest.fixture
def store(loaded: Any) -> Store:
    return loaded[0]


@pytest.fixture
def ids(loaded: Any) -> dict[str, Any]:
    return loaded[1]


def q(store: Store, name: str, **params: Any) -> list[dict[str, Any]]:
    return as_dicts(*run_query(store, name, NOW, **params))


def interp(values: list[float], level: float) -> float:
    """Linear interpolation between closest ranks, as ClickHouse `quantile` does."""
    s = sorted(values)
    pos = level * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return round(s[lo] + (s[hi] - s[lo]) * (pos - lo), 3)


# --------------------------------------------------------------------------- tests


def test_replay_left_duplicates_in_the_base_tables(store: Store) -> None:
    _, raw = store.query("SELECT count() FROM tocsin.alerts")
    _, final = store.query("SELECT count() FROM tocsin.alerts FINAL")
    assert final[0][0] == 11
    assert raw[0][0] >= final[0][0]  # merges may or may not have happened yet; FINAL is exact


def test_every_query_file_is_covered() -> None:
    assert set(query_names()) == {
        "alerts_filtered", "attempts_of_alert", "delivery_success_rate", "failing_destinations",
        "latency_by_channel", "noisiest_fingerprints", "totals_24h_by_severity", "totals_24h_by_type",
        # the dashboard's charts: tests/integration/test_chart_queries.py
        "alerts_by_severity_over_time", "alerts_by_outcome_over_time", "delivery_success_over_time",
        "latency_over_time",
    }


def test_totals_24h_by_severity(store: Store) -> None:
    rows = q(store, "totals_24h_by_severity")
    assert [(r["severity"], r["alerts"], r["notified"], r["suppressed"], r["fingerprints"]) for r in rows] == [
        (1, 6, 2, 4, 2),
        (2, 3, 1, 2, 1),
        (3, 1, 1, 0, 1),
    ]


def test_totals_24h_by_type_with_success_rate(store: Store) -> None:
    rows = {r["type"]: r for r in q(store, "totals_24h_by_type")}
    assert set(rows) == {"position_limit_hit", "order_rejected", "component_unhealthy", "component_recovered"}
    pl = rows["position_limit_hit"]
    assert (pl["alerts"], pl["notified"], pl["suppressed"], pl["deliveries"], pl["delivered"]) == (5, 1, 4, 2, 2)
    assert pl["delivery_success_rate"] == 1.0
    orj = rows["order_rejected"]
    assert (orj["alerts"], orj["deliveries"], orj["delivered"], orj["delivery_success_rate"]) == (3, 1, 0, 0.0)
    assert rows["component_unhealthy"]["delivery_success_rate"] == 1.0
    assert rows["component_recovered"]["worst_severity"] == 3
    assert [r["type"] for r in q(store, "totals_24h_by_type")][0] == "position_limit_hit"


def test_delivery_success_rate(store: Store) -> None:
    rows = {r["channel"]: r for r in q(store, "delivery_success_rate")}
    assert {k: (r["deliveries"], r["delivered"], r["dead"], r["attempts"], r["success_rate"]) for k, r in rows.items()} == {
        "console": (2, 2, 0, 2, 1.0),
        "email": (2, 2, 0, 3, 1.0),
        "webhook": (2, 1, 1, 4, 0.5),
    }


def test_latency_by_channel(store: Store) -> None:
    rows = {r["channel"]: r for r in q(store, "latency_by_channel")}
    expected = {"console": [1.0, 2.0], "email": [120.0, 80.0, 90.0], "webhook": [40.0, 300.0, 310.0, 320.0]}
    assert set(rows) == set(expected)
    for channel, values in expected.items():
        r = rows[channel]
        assert r["attempts"] == len(values)
        assert r["p50_ms"] == pytest.approx(interp(values, 0.5))
        assert r["p95_ms"] == pytest.approx(interp(values, 0.95))
        assert r["p99_ms"] == pytest.approx(interp(values, 0.99))
        assert r["max_ms"] == max(values)
    assert rows["webhook"]["p50_ms"] == pytest.approx(305.0)


def test_noisiest_fingerprints(store: Store) -> None:
    rows = q(store, "noisiest_fingerprints")
    assert [(r["fingerprint"], r["alerts"], r["suppressed"], r["notified"], r["windows"]) for r in rows] == [
        (FP_A, 5, 4, 1, 1),
        (FP_B, 3, 2, 1, 1),
    ]
    assert rows[0]["first_seen"] == NOW - 5 * H and rows[0]["last_seen"] == NOW - 5 * H + 4 * M
    assert len(q(store, "noisiest_fingerprints", limit=1)) == 1


def test_attempts_of_alert(store: Store, ids: dict[str, Any]) -> None:
    rows = q(store, "attempts_of_alert", alert_id=ids["A"][0])
    assert [(r["destination"], r["attempt"], r["status"], r["response_code"]) for r in rows] == [
        ("email:risk", 1, "failed", 451),
        ("webhook:default", 1, "sent", 200),
        ("email:risk", 2, "sent", 250),
        ("webhook:default", 2, "skipped_duplicate", None),
    ]
    assert {r["attempt_id"] for r in rows} == set(ids["attempts_A"])
    assert rows[0]["error"] == "mailbox busy" and rows[0]["latency_ms"] == 120.0
    assert q(store, "attempts_of_alert", alert_id=str(uuid.uuid4())) == []


def test_failing_destinations(store: Store) -> None:
    rows = q(store, "failing_destinations")
    assert [(r["destination"], r["attempts"], r["sent"], r["failed"], r["dead"], r["failure_rate"]) for r in rows] == [
        ("webhook:default", 4, 1, 2, 1, 0.75),
        ("email:risk", 2, 1, 1, 0, 0.5),
    ]
    assert rows[0]["last_error"] == "server error 3"
    assert rows[0]["last_failure_at"] == NOW - 3 * H + 7 * SEC
    assert rows[1]["last_error"] == "mailbox busy"


def test_alerts_filtered(store: Store, ids: dict[str, Any]) -> None:
    every = q(store, "alerts_filtered")
    assert len(every) == 10
    assert every[0]["alert_id"] == ids["R"]  # newest first
    assert [r["event_timestamp"] for r in every] == sorted((r["event_timestamp"] for r in every), reverse=True)

    aapl = q(store, "alerts_filtered", symbol="AAPL")
    assert {r["alert_id"] for r in aapl} == set(ids["A"])
    assert {(r["status"], r["status_by"]) for r in aapl} == {("acknowledged", "alice")}
    assert aapl[0]["destinations"] == [] and aapl[-1]["destinations"] == ["email:risk", "webhook:default"]

    opened = q(store, "alerts_filtered", status="open")
    assert {r["alert_id"] for r in opened} == {*ids["B"], ids["R"]}  # B's resolve came before B
    assert all(r["status_at"] is None for r in opened)
    resolved = q(store, "alerts_filtered", status="resolved")
    assert [r["alert_id"] for r in resolved] == [ids["C"]]
    assert resolved[0]["status_by"] == f"alert:{ids['R']}"

    assert len(q(store, "alerts_filtered", outcome="suppress")) == 6
    assert [r["alert_id"] for r in q(store, "alerts_filtered", strategy_id="s2", outcome="notify")] == [ids["B"][0]]
    assert {r["alert_id"] for r in q(store, "alerts_filtered", since=NOW - 150 * M, until=NOW)} == {ids["C"], ids["R"]}
    assert len(q(store, "alerts_filtered", severity=1)) == 6
    assert len(q(store, "alerts_filtered", type="order_rejected")) == 3
    assert [r["alert_id"] for r in q(store, "alerts_filtered", limit=2, offset=1)] == [r["alert_id"] for r in every[1:3]]
    assert q(store, "alerts_filtered", symbol="NOPE") == []


def test_stats_24h(store: Store) -> None:
    assert stats_24h(store, NOW) == {
        "total_24h": 10,
        "by_severity": {"SEV1": 6, "SEV2": 3, "SEV3": 1},
        "by_type": {"position_limit_hit": 5, "order_rejected": 3, "component_recovered": 1, "component_unhealthy": 1},
        "delivery_success_rate": round(5 / 6, 4),
    }
    later = stats_24h(store, NOW + 48 * H)
    assert later == {"total_24h": 0, "by_severity": {"SEV1": 0, "SEV2": 0, "SEV3": 0}, "by_type": {},
                     "delivery_success_rate": None}


def test_alert_row_keeps_every_field(store: Store, ids: dict[str, Any]) -> None:
    cols, rows = store.query("SELECT * FROM tocsin.alerts FINAL WHERE alert_id = {a:UUID}", {"a": ids["A"][2]})
    row = dict(zip(cols, rows[0], strict=True))
    assert row["fingerprint"] == FP_A and row["severity"] == 1 and row["outcome"] == "suppress"
    assert row["suppressed_count"] == 2 and row["symbol"] == "AAPL" and row["strategy_id"] == "s1"
    assert row["details"] == '{"limit":100,"qty":122}'
    assert row["event_timestamp"] == NOW - 5 * H + 2 * M and row["event_timestamp"].tzinfo is not None
    assert row["requires_action"] is False and row["action"] == "trigger"


def test_readonly_queries(store: Store) -> None:
    from tocsin.errors import ReadOnlyError

    cols, rows = store.query_readonly("SELECT count() AS n FROM tocsin.alerts FINAL")
    assert cols == ["n"] and rows == [(11,)]
    for sql in ("DROP TABLE tocsin.alerts", "INSERT INTO tocsin.alerts (fingerprint) VALUES ('x')",
                "SELECT 1; DROP TABLE tocsin.alerts", "TRUNCATE TABLE tocsin.alerts", "  "):
        with pytest.raises(ReadOnlyError):
            store.query_readonly(sql)
    assert store.query_readonly("SHOW TABLES FROM tocsin")[1]
    assert store.query_readonly("DESCRIBE TABLE tocsin.alert_lifecycle")[1]
    assert store.query_readonly("-- a comment\nWITH 2 AS x SELECT x")[1] == [(2,)]


def test_no_migration_is_left(store: Store) -> None:
    assert store.migrate() == []
    assert store.applied_versions() == [1, 2]


async def test_totals_count_alerts_not_the_steps_recorded_about_them(store: Store) -> None:
    """A window's digest and an escalation's steps are rows of tocsin.alerts about an alert
    already counted: the totals and the per-minute chart leave them out (a window of their own,
    60 days back, so the other tests' figures stay as they are)."""
    t0 = NOW - 60 * 24 * H
    kw: dict[str, Any] = {"type": "order_rejected", "severity": 2, "account_id": "acc9", "symbol": "X"}
    first = decision(at=t0, n=0, outcome=Outcome.NOTIFY, destinations=["webhook:default"], **kw)
    repeat = decision(at=t0 + M, n=1, outcome=Outcome.SUPPRESS, suppressed_count=1, **kw)
    steps = [decision(at=t0 + 10 * M, n=2, outcome=Outcome.DIGEST, suppressed_count=1, **kw),
             decision(at=t0 + 5 * M, n=3, outcome=Outcome.ESCALATED, destinations=["webhook:lead"], **kw),
             decision(at=t0 + 6 * M, n=4, outcome=Outcome.ESCALATION_STOPPED, **kw)]
    await _record(store, [("decisions", d) for d in (first, repeat, *steps)])
    window = {"since": t0 - H, "until": t0 + H}
    sev = q(store, "totals_24h_by_severity", **window)
    assert [(r["severity"], r["alerts"], r["notified"], r["suppressed"]) for r in sev] == [(2, 2, 1, 1)]
    assert [(r["type"], r["alerts"]) for r in q(store, "totals_24h_by_type", **window)] == [("order_rejected", 2)]
    noisy = q(store, "noisiest_fingerprints", **window)
    assert [(r["alerts"], r["suppressed"], r["notified"]) for r in noisy] == [(2, 1, 1)]
    per_hour = q(store, "alerts_by_severity_over_time", bucket_s=3600, **window)
    assert sum(r["alerts"] for r in per_hour) == 2
    by_outcome = {r["outcome"]: r["alerts"] for r in q(store, "alerts_by_outcome_over_time", bucket_s=7200, **window)}
    assert by_outcome == {"notify": 1, "suppress": 1, "digest": 1, "escalated": 1, "escalation_stopped": 1}
