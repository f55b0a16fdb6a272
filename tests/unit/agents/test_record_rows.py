"""The one row builder per kind (agents/record_rows.py): the row of a message is the model's
fields in the table's columns (infra/clickhouse/001_init.sql), whether the message comes as
its bytes, a dict or the model; what the shape refuses the model reads; a malformed message
is a RecordError with its reason.

tests/integration/test_clickhouse_json.py checks the same rows against ClickHouse's own
parsing of the messages.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tocsin.infra.clickhouse
from tocsin.agents.record_rows import RecordError, row_for
from tocsin.agents.record_shapes import TABLES
from tocsin.schemas import create_alert, dumps
from tocsin.schemas.alert import KNOWN_TYPES
from tocsin.schemas.messages import (
    AttemptStatus,
    Decision,
    DeliveryAttempt,
    LifecycleAction,
    LifecycleEvent,
    Outcome,
    decision_record,
)

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
DDL = (Path(tocsin.infra.clickhouse.__file__).parent / "001_init.sql").read_text()


def columns(table: str) -> list[str]:
    """The columns the recorder writes, in the DDL's order (``recorded_at`` is ClickHouse's)."""
    body = re.search(rf"CREATE TABLE IF NOT EXISTS tocsin\.{table}\n\((.*?)\n\)", DDL, re.S)
    assert body is not None, table
    names = [line.split()[0] for line in body.group(1).splitlines() if line.strip()]
    return [n for n in names if n != "recorded_at"]


# --------------------------------------------------------------------------- the model's fields


def decision_columns(d: Decision) -> dict[str, Any]:
    a, e = d.alert, d.alert.entity
    return {
        "decision_id": str(d.decision_id), "alert_id": str(a.alert_id), "fingerprint": a.fingerprint,
        "type": a.type, "severity": a.severity, "outcome": d.outcome.value, "reason": d.reason,
        "dedupe_key": d.dedupe_key, "suppressed_count": d.suppressed_count, "window_start": d.window_start,
        "event_timestamp": a.event_timestamp, "decided_at": d.decided_at, "account_id": e.account_id or "",
        "symbol": e.symbol or "", "strategy_id": e.strategy_id or "", "run_id": e.run_id or "",
        "summary": a.summary, "details": orjson.dumps(a.details).decode(), "source": a.source or "",
        "action": a.action, "resolves": a.resolves or "", "requires_action": a.requires_action,
        "destinations": d.destinations,
    }


def attempt_columns(x: DeliveryAttempt) -> dict[str, Any]:
    return {
        "attempt_id": str(x.attempt_id), "delivery_id": x.delivery_id, "alert_id": str(x.alert_id),
        "fingerprint": x.fingerprint, "type": x.type, "severity": x.severity, "channel": x.channel,
        "destination": x.destination, "attempt": x.attempt, "status": x.status.value, "reason": x.reason,
        "response_code": x.response_code, "error": x.error, "started_at": x.started_at,
        "finished_at": x.finished_at, "latency_ms": x.latency_ms or 0.0,  # -0.0 is 0.0, as in ClickHouse's row
    }


def lifecycle_columns(x: LifecycleEvent) -> dict[str, Any]:
    return {
        "event_id": str(x.event_id), "fingerprint": x.fingerprint, "action": x.action.value, "by": x.by,
        "note": x.note, "at": x.at, "alert_id": None if x.alert_id is None else str(x.alert_id),
    }


def assert_rows(kind: str, model: Any, expected: dict[str, Any]) -> None:
    """The row of the model, of its bytes and of its dict: the model's fields, column for column."""
    table = TABLES[kind][0]
    raw = dumps(model)
    for value in (raw, orjson.loads(raw), model):
        got_table, row = row_for(kind, value)
        assert got_table == table
        assert list(row) == columns(table)
        assert row == expected
        for column, v in row.items():
            if isinstance(v, dt.datetime):
                assert v.tzinfo is dt.UTC, column


# --------------------------------------------------------------------------- properties

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
zones = st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)), dt.timezone(dt.timedelta(hours=-8))])
times = st.datetimes(dt.datetime(1900, 1, 2), dt.datetime(2299, 12, 30), timezones=zones)
json_leaf = st.none() | st.booleans() | st.integers(-(2**63) + 1, 2**63 - 1) | text \
    | st.floats(allow_nan=False, allow_infinity=False)
details = st.dictionaries(text, json_leaf | st.lists(json_leaf, max_size=3), max_size=6)


@st.composite
def decisions(draw: st.DrawFn) -> Decision:
    alert = create_alert(
        draw(st.sampled_from(sorted(KNOWN_TYPES))), draw(st.integers(1, 3)),
        draw(text.filter(str.strip)), event_timestamp=draw(times),
        account_id=draw(st.none() | text), symbol=draw(st.none() | text), strategy_id=draw(st.none() | text),
        run_id=draw(st.none() | text), details=draw(details), source=draw(st.none() | text),
        action=draw(st.sampled_from(["trigger", "resolve"])), requires_action=draw(st.booleans()),
        alert_id=draw(st.uuids()))
    return Decision.model_validate(decision_record(
        draw(st.uuids()), alert.model_dump(mode="python"), draw(text), draw(st.sampled_from(list(Outcome))),
        draw(text), draw(times), draw(st.integers(0, 2**32 - 1)),
        draw(st.lists(st.sampled_from(["webhook:default", "email:risk", "slack:ops"]), unique=True)), draw(times)))


@settings(max_examples=150, deadline=None)
@given(decisions())
def test_a_decision_row_is_the_model_fields(d: Decision) -> None:
    assert_rows("decisions", d, decision_columns(d))


@settings(max_examples=150, deadline=None)
@given(st.builds(DeliveryAttempt, attempt_id=st.uuids(), delivery_id=text, alert_id=st.uuids(), fingerprint=text,
                 type=text, severity=st.integers(0, 255), channel=text, destination=text,
                 attempt=st.integers(0, 65535), status=st.sampled_from(list(AttemptStatus)), reason=text,
                 response_code=st.none() | st.integers(-(2**31), 2**31 - 1), error=st.none() | text,
                 started_at=times, finished_at=times,
                 latency_ms=st.floats(-1e300, 1e300, allow_nan=False) | st.integers(0, 10**9)))
def test_an_attempt_row_is_the_model_fields(x: DeliveryAttempt) -> None:
    assert_rows("attempts", x, attempt_columns(x))


@settings(max_examples=100, deadline=None)
@given(st.builds(LifecycleEvent, event_id=st.uuids(), fingerprint=text, action=st.sampled_from(list(LifecycleAction)),
                 by=text, note=text, at=times, alert_id=st.none() | st.uuids()))
def test_a_lifecycle_row_is_the_model_fields(x: LifecycleEvent) -> None:
    assert_rows("lifecycle", x, lifecycle_columns(x))


# --------------------------------------------------------------------------- cases


def a_decision() -> dict[str, Any]:
    alert = create_alert("order_rejected", 2, "rejected", event_timestamp=NOW, account_id="a", symbol="X",
                         details={"qty": 3})
    return orjson.loads(dumps(Decision(decision_id=uuid.uuid4(), alert=alert, dedupe_key="k:1", outcome=Outcome.NOTIFY,
                                       reason="first", window_start=NOW, decided_at=NOW)))


def an_attempt() -> dict[str, Any]:
    return orjson.loads(dumps(DeliveryAttempt(
        delivery_id="d1", alert_id=uuid.uuid4(), fingerprint="f", type="t", severity=2, channel="webhook",
        destination="webhook:default", attempt=1, status=AttemptStatus.SENT, started_at=NOW, finished_at=NOW,
        latency_ms=2.5)))


def a_lifecycle_event() -> dict[str, Any]:
    return orjson.loads(dumps(LifecycleEvent(fingerprint="fp", action=LifecycleAction.RESOLVE, by="carol", at=NOW)))


BASES = {"decisions": a_decision, "attempts": an_attempt, "lifecycle": a_lifecycle_event}
GONE = object()


def message(kind: str, path: tuple[str, ...], value: Any) -> bytes:
    """The kind's message with ``path`` set to ``value`` (or removed: GONE), as bytes."""
    data = BASES[kind]()
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is GONE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return orjson.dumps(data)


@pytest.mark.parametrize(
    ("kind", "path", "value", "column", "expected"),
    [
        ("decisions", ("alert", "severity"), "SEV3", "severity", 3),
        ("decisions", ("window_start",), "2025-06-01 12:00:00", "window_start", NOW),  # naive: UTC
        ("decisions", ("decided_at",), "2025-06-01T14:00:00.25+02:00", "decided_at", NOW.replace(microsecond=250_000)),
        ("decisions", ("alert", "details"), None, "details", "{}"),
        ("decisions", ("alert", "entity"), None, "account_id", ""),
        ("decisions", ("alert", "fingerprint"), GONE, "fingerprint", "order_rejected:a:X:"),
        ("decisions", ("reason",), None, "reason", ""),
        ("decisions", ("suppressed_count",), None, "suppressed_count", 0),
        ("decisions", ("alert", "requires_action"), None, "requires_action", False),
        ("decisions", ("decision_id",), "0123456789abcdef0123456789ABCDEF", "decision_id",
         "01234567-89ab-cdef-0123-456789abcdef"),
        ("decisions", ("decision_id",), "01234567-89AB-CDEF-0123-456789ABCDEF", "decision_id",
         "01234567-89AB-CDEF-0123-456789ABCDEF"),  # a UUID in text, as ClickHouse reads it
        ("attempts", ("severity",), "2", "severity", 2),
        ("attempts", ("latency_ms",), -0.0, "latency_ms", 0.0),
        ("attempts", ("latency_ms",), 12, "latency_ms", 12.0),
        ("attempts", ("reason",), GONE, "reason", ""),
        ("attempts", ("response_code",), GONE, "response_code", None),
        ("lifecycle", ("by",), GONE, "by", "unknown"),
        ("lifecycle", ("note",), GONE, "note", ""),
        ("lifecycle", ("alert_id",), "01234567-89ab-cdef-0123-456789abcdef", "alert_id",
         "01234567-89ab-cdef-0123-456789abcdef"),
    ],
)
def test_what_the_model_reads_is_recorded_as_it_reads_it(kind: str, path: tuple[str, ...], value: Any, column: str,
                                                          expected: Any) -> None:
    _, row = row_for(kind, message(kind, path, value))
    assert row[column] == expected
    assert not isinstance(row[column], dt.datetime) or row[column].tzinfo is dt.UTC


def test_details_are_kept_as_the_message_writes_them() -> None:
    raw = message("decisions", ("alert", "details"), {"qty": 3}).replace(b'{"qty":3}', b'{ "qty" : 3 }')
    assert row_for("decisions", raw)[1]["details"] == '{ "qty" : 3 }'


@pytest.mark.parametrize(
    ("kind", "path", "value", "error"),
    [
        ("attempts", ("attempt",), 70000, "attempt 70000 is out of range"),
        ("attempts", ("severity",), 256, "severity 256 is out of range"),
        ("attempts", ("response_code",), 2**31, "response_code 2147483648 is out of range"),
        ("decisions", ("suppressed_count",), 2**32, "suppressed_count 4294967296 is out of range"),
        ("decisions", ("suppressed_count",), -1, "suppressed_count -1 is out of range"),
        ("attempts", ("started_at",), "2400-01-01T00:00:00Z", "started_at 2400-01-01T00:00:00+00:00 is outside 1900..2299"),
        ("lifecycle", ("at",), "1899-12-31T23:00:00Z", "at 1899-12-31T23:00:00+00:00 is outside 1900..2299"),
        ("decisions", ("window_start",), "0001-01-01T00:00:00+01:00", "outside 1900..2299"),
        ("decisions", ("alert", "event_timestamp"), "2025-06-01T12:00:00", "event_timestamp is naive"),
        ("decisions", ("alert", "details"), [1], "details must be a JSON object"),
        ("decisions", ("alert", "requires_action"), "false", "requires_action must be true or false"),
        ("decisions", ("alert", "action"), None, "alert.action"),
        ("decisions", ("destinations",), ["a", 1], "destinations.1"),
        ("decisions", ("alert",), GONE, "alert: Field required"),
        ("attempts", ("status",), "lost", "status"),
        ("lifecycle", ("note",), None, "note"),
        ("lifecycle", ("event_id",), "nope", "event_id"),
    ],
)
def test_a_malformed_message_is_an_error_with_its_reason(kind: str, path: tuple[str, ...], value: Any,
                                                         error: str) -> None:
    with pytest.raises(RecordError, match=re.escape(error)):
        row_for(kind, message(kind, path, value))


@pytest.mark.parametrize(
    ("kind", "value", "error"),
    [
        ("decisions", b"{not json", "not JSON"),
        ("decisions", b"[1, 2]", "expected a JSON object, got list"),
        ("decisions", 42, "expected a JSON object, got int"),
        ("bogus", b"{}", "unknown kind 'bogus'"),
    ],
)
def test_what_is_not_a_message_is_an_error(kind: str, value: Any, error: str) -> None:
    with pytest.raises(RecordError, match=re.escape(error)):
        row_for(kind, value)
