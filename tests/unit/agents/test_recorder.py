"""The Recorder's pure logic: rows from topic messages, rejects, batching, retries.

A fake store stands in for ClickHouse here; tests/integration/test_clickhouse_recorder.py
runs the same Recorder on the real engine with injected driver faults.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import orjson
import pytest

from tocsin.agents.record_rows import RecordError
from tocsin.agents.record_shapes import kind_for_topic
from tocsin.agents.recorder import Recorder, batch_token
from tocsin.errors import StoreError
from tocsin.schemas.messages import AttemptStatus, LifecycleAction, Outcome

from ...support.samples import attempt, decision, lifecycle, wire

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


class FakeStore:
    """Keeps inserts in memory; fails the first ``fail`` inserts with a StoreError."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.calls: list[tuple[str, list[dict[str, Any]], str | None]] = []
        self.rows: dict[str, list[dict[str, Any]]] = {}

    def insert(self, table: str, rows: list[dict[str, Any]], dedup_token: str | None = None) -> int:
        self.calls.append((table, list(rows), dedup_token))
        if self.fail > 0:
            self.fail -= 1
            raise StoreError("ClickHouse at http://u:***@h:1/tocsin: insert failed: cannot connect (connection refused)")
        self.rows.setdefault(table, []).extend(rows)
        return len(rows)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


async def no_sleep(_: float) -> None:
    return None


def dec(n: int = 0, **kw: Any) -> dict[str, Any]:
    d = decision(type="order_rejected", severity=2, at=NOW, n=n, outcome=Outcome.NOTIFY, account_id="a",
                 symbol="X", strategy_id="s", destinations=["webhook:default"], **kw)
    return wire(d)


def test_rows_for_a_decision_has_every_alert_column() -> None:
    value = dec(details={"qty": 3, "when": "now"})
    table, row = Recorder(FakeStore()).rows_for("decisions", value)
    assert table == "alerts"
    assert uuid.UUID(str(row["decision_id"])) == uuid.UUID(value["decision_id"])
    assert uuid.UUID(str(row["alert_id"])) == uuid.UUID(value["alert"]["alert_id"])
    assert (row["fingerprint"], row["type"], row["severity"], row["outcome"]) == ("order_rejected:a:X:s", "order_rejected", 2, "notify")
    assert row["event_timestamp"] == NOW and row["event_timestamp"].tzinfo is dt.UTC
    assert (row["account_id"], row["symbol"], row["strategy_id"], row["run_id"]) == ("a", "X", "s", "")
    assert orjson.loads(row["details"]) == {"qty": 3, "when": "now"}
    assert row["destinations"] == ["webhook:default"]
    assert row["source"] == "" and row["resolves"] == "" and row["requires_action"] is False
    assert set(row) == {
        "decision_id", "alert_id", "fingerprint", "type", "severity", "outcome", "reason", "dedupe_key",
        "suppressed_count", "window_start", "event_timestamp", "decided_at", "account_id", "symbol",
        "strategy_id", "run_id", "summary", "details", "source", "action", "resolves", "requires_action",
        "destinations",
    }


def test_rows_for_attempts_and_lifecycle_accept_bytes_and_dicts() -> None:
    d = decision(type="x", severity=1, at=NOW, n=0, outcome=Outcome.NOTIFY)
    a = attempt(d, "email:risk", 2, AttemptStatus.FAILED, NOW, 12.5, 451, "busy")
    table, row = Recorder(FakeStore()).rows_for("attempts", orjson.dumps(wire(a)))
    assert table == "delivery_attempts"
    assert (row["channel"], row["destination"], row["attempt"], row["status"]) == ("email", "email:risk", 2, "failed")
    assert (row["response_code"], row["error"], row["latency_ms"]) == (451, "busy", 12.5)
    lc = lifecycle("fp", LifecycleAction.RESOLVE, NOW, by="carol")
    table, row = Recorder(FakeStore()).rows_for("lifecycle", wire(lc))
    assert table == "alert_lifecycle"
    assert (row["fingerprint"], row["action"], row["by"], row["alert_id"]) == ("fp", "resolve", "carol", None)


@pytest.mark.parametrize(
    ("kind", "value", "error"),
    [
        ("decisions", b"{not json", "not JSON"),
        ("decisions", [1, 2], "expected a JSON object"),
        ("decisions", {"decision_id": "nope"}, "decision_id"),
        ("attempts", {"delivery_id": "d"}, "alert_id"),
        ("lifecycle", {"fingerprint": "f", "action": "explode"}, "action"),
        ("bogus", {}, "unknown kind"),
    ],
)
def test_malformed_messages_become_rejects(kind: str, value: Any, error: str) -> None:
    rec = Recorder(FakeStore())
    reject = rec.add(kind, value)
    assert reject is not None and error in reject.error and reject.value is value
    assert rec.rejects == [reject] and rec.rows_rejected == 1 and rec.pending == 0
    with pytest.raises(RecordError):
        rec.rows_for(kind, value)


def test_out_of_range_values_are_rejected_not_sent() -> None:
    rec = Recorder(FakeStore())
    d = decision(type="x", severity=1, at=NOW, n=0, outcome=Outcome.NOTIFY)
    bad = wire(attempt(d, "webhook:default", 70000, AttemptStatus.SENT, NOW, 1.0))
    reject = rec.add("attempts", bad)
    assert reject is not None and "attempt 70000 is out of range" in reject.error
    far = wire(attempt(d, "webhook:default", 1, AttemptStatus.SENT, dt.datetime(2400, 1, 1, tzinfo=dt.UTC), 1.0))
    reject = rec.add("attempts", far)
    assert reject is not None and "outside 1900..2299" in reject.error


def test_due_by_size_and_by_time() -> None:
    clock = Clock()
    rec = Recorder(FakeStore(), batch_rows=3, batch_s=1.0, clock=clock)
    assert not rec.due()
    rec.add("decisions", dec(0))
    assert not rec.due()
    clock.t += 0.99
    assert not rec.due()
    assert rec.due(now=clock.t + 0.02)
    rec.add("decisions", dec(1))
    rec.add("decisions", dec(2))
    assert rec.due(now=100.0)  # size reached, whatever the time


async def test_flush_inserts_each_table_with_a_deterministic_token() -> None:
    store = FakeStore()
    rec = Recorder(store)
    d = decision(type="x", severity=1, at=NOW, n=0, outcome=Outcome.NOTIFY)
    rec.add("decisions", wire(d))
    rec.add("attempts", wire(attempt(d, "webhook:default", 1, AttemptStatus.SENT, NOW, 3.0)))
    rec.add("lifecycle", wire(lifecycle("fp", LifecycleAction.ACKNOWLEDGE, NOW)))
    assert await rec.flush() == 3
    assert [c[0] for c in store.calls] == ["alerts", "delivery_attempts", "alert_lifecycle"]
    assert store.calls[0][2] == batch_token("alerts", [d.decision_id])
    assert rec.pending == 0 and rec.rows_inserted == 3 and rec.batches_inserted == 3
    assert not rec.due(now=1e9)


def test_batch_token_ignores_order_and_depends_on_ids() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    assert batch_token("alerts", [a, b]) == batch_token("alerts", [b, a])
    assert batch_token("alerts", [a]) != batch_token("alerts", [b])
    assert batch_token("alerts", [a]) != batch_token("alert_lifecycle", [a])


async def test_failed_inserts_are_retried_with_the_same_rows_and_token() -> None:
    store = FakeStore(fail=3)
    delays: list[float] = []

    async def sleep(s: float) -> None:
        delays.append(s)

    rec = Recorder(store, backoff_s=1.0, backoff_max_s=3.0, sleep=sleep)
    rejects = await rec.record_batch([("decisions", dec(i)) for i in range(5)])
    assert rejects == []
    assert len(store.rows["alerts"]) == 5 and rec.rows_inserted == 5 and rec.failures == 3
    assert len({(len(rows), token) for _, rows, token in store.calls}) == 1  # same batch every time
    assert len(delays) == 3 and 0.5 <= delays[0] <= 1.0 and 1.0 <= delays[1] <= 2.0 and 1.5 <= delays[2] <= 3.0


async def test_giving_up_keeps_the_rows_pending() -> None:
    store = FakeStore(fail=10)
    rec = Recorder(store, max_retries=2, sleep=no_sleep)
    rec.add("decisions", dec(0))
    with pytest.raises(StoreError):
        await rec.flush()
    assert rec.pending == 1 and rec.failures == 3
    store.fail = 0
    assert await rec.flush() == 1 and rec.pending == 0


async def test_record_batch_returns_this_batch_rejects() -> None:
    rec = Recorder(FakeStore())
    rejects = await rec.record_batch([("decisions", dec(0)), ("decisions", b"garbage"), ("attempts", {})])
    assert [r.kind for r in rejects] == ["decisions", "attempts"]
    assert rec.rejects == [] and rec.rows_inserted == 1
    assert rec.stats() == {"rows_inserted": 1, "batches_inserted": 1, "failures": 0, "rows_rejected": 2, "pending": 0}


def test_kind_for_topic() -> None:
    assert kind_for_topic("tocsin.decisions", "tocsin") == "decisions"
    assert kind_for_topic("p.lifecycle", "p") == "lifecycle"
    assert kind_for_topic("tocsin.alerts", "tocsin") is None
