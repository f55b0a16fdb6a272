"""ClickHouse parsing the topic messages (002_json_ingest.sql) on the real embedded engine:
the rows it writes are the rows the Python row builder writes, field for field, for odd values
too; a batch ClickHouse refuses falls back to the Python rows whole, exactly once; retried
batches are dropped by the recording tables and the per-minute view alike."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import orjson
import pytest

from tocsin.agents.record_shapes import TABLES, json_id
from tocsin.agents.recorder import Recorder
from tocsin.errors import DataRefusedError
from tocsin.infra.clickhouse.store import Store
from tocsin.schemas.codec import dumps
from tocsin.schemas.messages import AttemptStatus, LifecycleAction, Outcome

from ..support.samples import attempt, decision, lifecycle, wire

pytestmark = pytest.mark.integration

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
ODD = "émoji 🚨 中文 עברית e\u0301 \"quoted\" back\\slash tab\t nl\n nul\u0000 ctl\u001f \u2028"


def as_bytes(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS)


def odd_decisions() -> list[bytes]:
    out = []
    base = decision(type="order_rejected", severity=1, at=NOW, n=0, outcome=Outcome.NOTIFY, account_id="acc",
                    symbol="BTC-USD", strategy_id="s1", destinations=["webhook:default", "email:risk"],
                    details={"qty": 3, "px": 0.1, "tiny": 1e-7, "big": 1.7976931348623157e308, "neg": -12.5,
                             "int": 2**63 - 1, "nested": {"a": [1, 2.5, None, True, {"b": ODD}]}, "text": ODD},
                    source="oms", summary=ODD[:200], requires_action=True)
    out.append(dumps(base))
    long_details = {f"k{i}": ("x" * 300 + ODD)[:400] for i in range(19)}
    out.append(dumps(decision(type="db_write_fail", severity=2, at=NOW, n=1, outcome=Outcome.SUPPRESS,
                              suppressed_count=2**32 - 1, details=long_details)))
    # null optional fields, no entity at all, null reason
    w = wire(decision(type="component_unhealthy", severity=3, at=NOW, n=2, outcome=Outcome.BYPASS,
                      fingerprint="component_unhealthy:redis"))
    w["alert"]["entity"] = None
    w["alert"]["source"] = None
    w["reason"] = None
    w["suppressed_count"] = None
    w["alert"]["requires_action"] = None
    out.append(as_bytes(w))
    # timestamps with offsets, 1, 3 and 6 fraction digits, before 1970, at the ends of the range
    for i, (ev, ws, dec) in enumerate([
        ("2025-06-01T17:30:00.123456+05:30", "2025-06-01T12:00:00Z", "2025-06-01T04:00:00.9-08:00"),
        ("1950-06-01T12:00:00.123999Z", "1950-06-01T12:00:00.5+14:00", "1950-06-01T12:00:00.001-00:00"),
        ("1901-01-01T00:00:00+23:59", "2298-12-31T23:59:59.999999-23:59", "1969-12-31T23:59:59.999999Z"),
        ("2024-02-29T23:59:59.999Z", "2000-01-01T00:00:00.000Z", "2025-12-31T23:59:59+00:00"),
    ]):
        w = wire(decision(type="order_filled", severity=2, at=NOW, n=10 + i, outcome=Outcome.NOTIFY))
        w["alert"]["event_timestamp"], w["window_start"], w["decided_at"] = ev, ws, dec
        w["alert"]["details"] = {}
        w["decision_id"] = w["decision_id"].upper()  # uppercase hex is a UUID too
        out.append(as_bytes(w))
    # an additive field the tables do not know, at every level
    w = wire(decision(type="order_rejected", severity=1, at=NOW, n=20, outcome=Outcome.NOTIFY))
    w["future"] = {"x": 1}
    w["alert"]["future"] = [1]
    w["alert"]["entity"]["future"] = "y"
    out.append(as_bytes(w))
    return out


def odd_attempts() -> list[bytes]:
    d = decision(type="order_rejected", severity=1, at=NOW, n=0, outcome=Outcome.NOTIFY)
    out = []
    for i, (status, code, error, latency) in enumerate([
        (AttemptStatus.SENT, 200, None, 0.1),
        (AttemptStatus.FAILED, 503, ODD, 123.456789012345),
        (AttemptStatus.DEAD, None, "x" * 5000, 1e-300),
        (AttemptStatus.RATE_LIMITED, -1, "", 5e-324),
        (AttemptStatus.CIRCUIT_OPEN, 2**31 - 1, None, 0.0),
        (AttemptStatus.SKIPPED_DUPLICATE, -(2**31), None, 1.7976931348623157e308),
    ]):
        w = wire(attempt(d, "webhook:default", i + 1, status, NOW + dt.timedelta(seconds=i), 1.5, code, error))
        w["latency_ms"] = latency
        out.append(as_bytes(w))
    w = wire(attempt(d, "email:risk", 65535, AttemptStatus.SENT, NOW, 7.0))
    w["latency_ms"] = 12  # an int
    w["severity"] = 255
    w["reason"] = None
    w["started_at"] = "2025-06-01T14:00:00.654321+02:00"
    out.append(as_bytes(w))
    return out


def odd_lifecycle() -> list[bytes]:
    out = [dumps(lifecycle(ODD, action, NOW + dt.timedelta(seconds=i), by=ODD)) for i, action in enumerate(LifecycleAction)]
    w = wire(lifecycle("fp", LifecycleAction.ACKNOWLEDGE, NOW))
    w["alert_id"] = str(uuid.uuid4())
    w["note"] = ODD
    w["at"] = "2025-06-01T08:00:00.5-04:00"
    out.append(as_bytes(w))
    w = wire(lifecycle("fp2", LifecycleAction.RESOLVE, NOW))
    del w["note"]  # absent: the model's default, as ClickHouse's
    out.append(as_bytes(w))
    return out


ORDER = {"alerts": "decision_id", "delivery_attempts": "attempt_id", "alert_lifecycle": "event_id"}


def table_rows(store: Store, table: str) -> list[str]:
    """Every row of the table (without recorded_at), in id order, as text: repr tells -0.0
    from 0.0 and a str from a UUID."""
    cols, rows = store.query(f"SELECT * EXCEPT recorded_at FROM tocsin.{table} ORDER BY {ORDER[table]}")
    return [repr(dict(zip(cols, r, strict=True))) for r in rows]


def python_rows(store: Store, messages: list[tuple[str, bytes]]) -> dict[str, list[str]]:
    """The rows of the Python row builder (``record_rows``: messages ClickHouse does not parse)."""
    rec = Recorder(store)
    by_table: dict[str, list[dict[str, Any]]] = {}
    for kind, raw in messages:
        table, row = rec.rows_for(kind, raw)
        by_table.setdefault(table, []).append(row)
    for table in ORDER:
        store.truncate(table)
        if by_table.get(table):
            store.insert(table, by_table[table])
    return {table: table_rows(store, table) for table in ORDER}


async def test_clickhouse_writes_the_rows_the_python_builders_write(store: Store) -> None:
    messages = ([("decisions", m) for m in odd_decisions()] + [("attempts", m) for m in odd_attempts()]
                + [("lifecycle", m) for m in odd_lifecycle()])
    for kind, raw in messages:  # every one of them takes the JSON path
        assert json_id(kind, raw) is not None, raw
    rec = Recorder(store)
    for kind, raw in messages:
        assert rec.add(kind, raw) is None
    assert rec.pending == len(messages) and all(not rows for rows in rec._pending.values())
    assert await rec.flush() == len(messages)
    assert rec.json_refused == 0 and rec.rejects == []
    parsed = {table: table_rows(store, table) for table in ORDER}
    assert [len(parsed[t]) for t in ORDER] == [len(odd_decisions()), len(odd_attempts()), len(odd_lifecycle())]
    built = python_rows(store, messages)
    for table in ORDER:
        assert parsed[table] == built[table], table


async def test_dicts_and_bytes_give_the_same_rows(store: Store) -> None:
    values = [orjson.loads(m) for m in odd_decisions()]
    await Recorder(store).record_batch([("decisions", v) for v in values])
    from_dicts = table_rows(store, "alerts")
    store.truncate("alerts")
    await Recorder(store).record_batch([("decisions", m) for m in odd_decisions()])
    assert table_rows(store, "alerts") == from_dicts


def not_for_clickhouse() -> list[tuple[str, bytes]]:
    """Messages the checks keep on the Python path: valid ones the model reads its own way
    (rows, the same as before) and malformed ones (rejects)."""
    d = wire(decision(type="x", severity=2, at=NOW, n=0, outcome=Outcome.NOTIFY))
    out = []
    for path, value in [
        (("alert", "severity"), "SEV2"),
        (("alert", "severity"), True),
        (("alert", "details"), None),
        (("alert", "action"), None),
        (("alert", "summary"), {"not": "text"}),
        (("alert", "source"), {}),
        (("suppressed_count",), 2**32),
        (("destinations",), ["a", 1]),
        (("alert", "requires_action"), "false"),
    ]:
        w = orjson.loads(orjson.dumps(d))
        target = w
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        w["decision_id"] = str(uuid.uuid4())
        out.append(("decisions", as_bytes(w)))
    out.append(("decisions", b'{"decision_id": "00000000-0000-0000-0000-000000000001"}'))  # spaces: not canonical
    a = wire(attempt(decision(type="x", severity=2, at=NOW, n=0, outcome=Outcome.NOTIFY), "webhook:default", 1,
                     AttemptStatus.SENT, NOW, 1.0))
    for key, value in [("latency_ms", -0.0), ("attempt", 70000), ("response_code", True), ("severity", "2")]:
        w = dict(a, **{key: value, "attempt_id": str(uuid.uuid4())})
        out.append(("attempts", as_bytes(w)))
    lc = wire(lifecycle("fp", LifecycleAction.ACKNOWLEDGE, NOW))
    out.append(("lifecycle", as_bytes({k: v for k, v in lc.items() if k != "by"})))  # by: the model's default
    out.append(("lifecycle", as_bytes(dict(lc, note=None))))
    return out


async def test_messages_the_checks_keep_give_the_rows_and_rejects_of_before(store: Store) -> None:
    messages = not_for_clickhouse()
    for kind, raw in messages:
        assert json_id(kind, raw) is None, raw
    before = Recorder(store)
    expected_rejects = []
    for kind, raw in messages:
        try:
            before.rows_for(kind, raw)
        except Exception as exc:
            expected_rejects.append((kind, raw, str(exc)))
    rec = Recorder(store)
    rejects = await rec.record_batch(messages)
    assert [(r.kind, r.value, r.error) for r in rejects] == expected_rejects
    assert rec.json_refused == 0
    recorded = {table: table_rows(store, table) for table in ORDER}
    good = [(k, m) for k, m in messages if all(m is not r[1] for r in expected_rejects)]
    assert good and python_rows(store, good) == recorded


async def test_a_batch_clickhouse_refuses_takes_the_python_path_exactly_once(store: Store) -> None:
    d = decision(type="x", severity=1, at=NOW, n=0, outcome=Outcome.NOTIFY)
    good = [dumps(attempt(d, "webhook:default", i + 1, AttemptStatus.SENT, NOW + dt.timedelta(seconds=i), 5.0))
            for i in range(50)]
    bad = []
    for key, value in [("started_at", "2025-06-01T24:00:00Z"),  # ClickHouse would roll it over
                       ("finished_at", "2025-02-30T00:00:00Z"),  # no such day
                       ("alert_id", "not-a-uuid"),
                       ("started_at", "2400-01-01T00:00:00Z")]:  # out of range
        w = dict(wire(attempt(d, "webhook:default", 99, AttemptStatus.SENT, NOW, 1.0)), **{key: value})
        w["attempt_id"] = str(uuid.uuid4())
        bad.append(as_bytes(w))
    for raw in bad:  # the checks let them through: ClickHouse itself refuses them
        assert json_id("attempts", raw) is not None
        with pytest.raises(DataRefusedError):
            store.insert_json("delivery_attempts_json", [raw], None)
    messages = [("attempts", m) for m in good[:25] + bad + good[25:]]
    rec = Recorder(store)
    rejects = await rec.record_batch(messages)
    assert rec.json_refused == 1
    assert sorted(r.value for r in rejects) == sorted(bad)
    assert all("out" in r.error or "date" in r.error.lower() or "uuid" in r.error.lower() or "range" in r.error
               for r in rejects), [r.error for r in rejects]
    # nothing of the refused insert was written: exact counts, base table and view alike
    assert store.query("SELECT count() FROM tocsin.delivery_attempts")[1] == [(50,)]
    assert store.query("SELECT sum(attempts) FROM tocsin.delivery_stats_1m")[1] == [(50,)]
    recorded = table_rows(store, "delivery_attempts")
    assert python_rows(store, [("attempts", m) for m in good])["delivery_attempts"] == recorded


async def test_a_refused_batch_keeps_the_rows_the_model_accepts(store: Store) -> None:
    msgs = [wire(decision(type="x", severity=1, at=NOW, n=i, outcome=Outcome.NOTIFY)) for i in range(10)]
    msgs[3]["window_start"] = "2025-06-01 12:00:00"  # naive: ClickHouse refuses, the model reads UTC
    messages = [("decisions", as_bytes(m)) for m in msgs]
    rec = Recorder(store)
    assert await rec.record_batch(messages) == []
    assert rec.json_refused == 1
    recorded = table_rows(store, "alerts")
    assert len(recorded) == 10 and python_rows(store, messages)["alerts"] == recorded


async def test_retried_json_batches_are_dropped_views_included(store: Store) -> None:
    d = decision(type="x", severity=1, at=NOW, n=0, outcome=Outcome.NOTIFY)
    msgs = [("decisions", dumps(decision(type="x", severity=1, at=NOW, n=i, outcome=Outcome.NOTIFY))) for i in range(20)]
    msgs += [("attempts", dumps(attempt(d, "webhook:default", i + 1, AttemptStatus.SENT, NOW, 3.0))) for i in range(20)]
    for _ in range(3):  # the same batch: the same tokens
        assert await Recorder(store).record_batch(msgs) == []
    counts = store.query("SELECT (SELECT count() FROM tocsin.alerts), (SELECT count() FROM tocsin.delivery_attempts), "
                         "(SELECT sum(attempts) FROM tocsin.delivery_stats_1m)")[1]
    assert counts == [(20, 20, 20)]


def test_the_json_tables_store_nothing(store: Store) -> None:
    for kind, table in (("decisions", "alerts_json"), ("attempts", "delivery_attempts_json"),
                        ("lifecycle", "alert_lifecycle_json")):
        assert TABLES[kind][0] in store.query(f"SHOW CREATE TABLE tocsin.{table}_mv")[1][0][0]
        assert "Null" in store.query(f"SHOW CREATE TABLE tocsin.{table}")[1][0][0]



async def test_a_message_another_writer_formatted_is_parsed_details_as_written(store: Store) -> None:
    import json

    w = wire(decision(type="order_rejected", severity=2, at=NOW, n=0, outcome=Outcome.NOTIFY,
                      details={"qty": 3, "nested": {"b": [1, 2.5, None]}, "text": ODD}))
    raw = json.dumps(w, indent=1, ensure_ascii=True).encode()  # spaces, newlines, \u escapes
    assert raw != dumps(decision(type="order_rejected", severity=2, at=NOW, n=0, outcome=Outcome.NOTIFY))
    assert json_id("decisions", raw) == w["decision_id"]
    assert await Recorder(store).record_batch([("decisions", raw)]) == []
    cols, rows = store.query("SELECT * EXCEPT recorded_at FROM tocsin.alerts")
    parsed = dict(zip(cols, rows[0], strict=True))
    assert orjson.loads(parsed.pop("details")) == w["alert"]["details"]  # the same JSON value, its text as written
    store.truncate("alerts")
    await Recorder(store).record_batch([("decisions", as_bytes(w))])
    cols, rows = store.query("SELECT * EXCEPT recorded_at FROM tocsin.alerts")
    canonical = dict(zip(cols, rows[0], strict=True))
    canonical.pop("details")
    assert parsed == canonical  # every other column as from Tocsin's own bytes
