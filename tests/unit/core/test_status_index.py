"""The status table's index (core/status_index.py) answers as ``api.list_alerts`` did over
every status, keeps what the table holds, and finds what the retention sweep deletes."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tocsin.agents.lifecycle import empty_status, expired_statuses
from tocsin.core import status_index as si
from tocsin.core.status_index import FIELDS, StatusIndex, decode, encode, order_key
from tocsin.core.tables import StatusStore
from tocsin.decisions.retention import status_expiry
from tocsin.web.api import MAX_LIMIT, STATUSES, list_alerts, stats_from_statuses

T0 = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


# the fold's times: whole seconds and fractions of the same seconds (as text, "...:01Z" sorts
# after "...:01.5Z"), so the order's ties and its text comparison are both exercised
UUID = "3f2b1c9e-4d5a-4b6c-8d7e-9f0a1b2c3d4e"
TIMES = [iso(T0 + dt.timedelta(seconds=s, microseconds=us)) for s in (0, 1, 2, 3600) for us in (0, 1, 500_000)]


@st.composite
def statuses(draw: Any) -> dict[str, Any]:
    fp = draw(st.sampled_from(["a", "b", "ab", "b:1", "z", "é", "Z", "a\x00", ""]) | st.text(max_size=4))
    s = empty_status(fp)
    last = draw(st.sampled_from([None, *TIMES]))
    first = draw(st.sampled_from([None, *TIMES]))
    s.update(
        alert_id=draw(st.sampled_from([None, "", "7d3c", "8e1f", UUID, UUID.upper(), UUID.replace("-", "")])
                      | st.uuids().map(str)),
        type=draw(st.sampled_from([None, "db_write_fail", "order_rejected", "x"])),
        severity=draw(st.sampled_from([1, 2, 3, None])),
        summary=draw(st.text(max_size=8)),
        status=draw(st.sampled_from(STATUSES)),
        occurrences=draw(st.integers(0, 50)),
        suppressed_count=draw(st.integers(0, 50)),
        first_seen=first, last_seen=last,
        requires_action=draw(st.booleans()),
        entity=draw(st.fixed_dictionaries({}, optional={"symbol": st.sampled_from(["BTC", "ETH"]),
                                                        "strategy_id": st.sampled_from(["s1", "s2"]),
                                                        "account_id": st.sampled_from(["A1"])})),
        status_changed_at=draw(st.sampled_from([None, *TIMES])),
    )
    s["notified_alert_id"] = draw(st.sampled_from([s["alert_id"], None, UUID, "x"]))
    if draw(st.booleans()):
        s["resolved_by"] = "tocsin:recovery"  # fold_action adds it, after the fields
    return s


@st.composite
def filters(draw: Any) -> dict[str, Any]:
    f: dict[str, Any] = {}
    if draw(st.booleans()):
        f["severity"] = draw(st.sampled_from([1, 2, 3]))
    if draw(st.booleans()):
        f["status"] = set(draw(st.lists(st.sampled_from(STATUSES), min_size=1)))
    for name, values in (("type", ["db_write_fail", "x", "never"]), ("symbol", ["BTC", "ETH"]),
                         ("strategy_id", ["s1", "s2", "s9"])):
        if draw(st.integers(0, 3)) == 0:
            f[name] = draw(st.sampled_from(values))
    for name in ("since", "until"):
        if draw(st.integers(0, 2)) == 0:
            f[name] = T0 + dt.timedelta(seconds=draw(st.sampled_from([0, 1, 2, 3600])),
                                        microseconds=draw(st.sampled_from([0, 1, 500_000])))
    f["offset"] = draw(st.integers(0, 12))
    f["limit"] = draw(st.sampled_from([1, 2, 3, 5, 50, MAX_LIMIT]))
    return f


def index_of(rows: list[tuple[dict[str, Any], int]], drop: list[int]) -> tuple[StatusIndex, dict[str, Any]]:
    """An index fed ``rows`` in order (a fingerprint again replaces it), then ``drop``'s
    positions deleted; and the dict of what it should hold."""
    index, want = StatusIndex(), {}
    for s, partition in rows:
        index.put(s["fingerprint"], s, partition)
        want[s["fingerprint"]] = s
    for i in drop:
        if i < len(rows):
            fp = rows[i][0]["fingerprint"]
            index.discard(fp)
            want.pop(fp, None)
    return index, want


rows_st = st.lists(st.tuples(statuses(), st.integers(0, 3)), max_size=40)


@pytest.fixture(params=["ordered in Python", "around the page with numpy", "among the most recent first"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param != "ordered in Python":
        monkeypatch.setattr(si, "SMALL", 0)
    if request.param == "among the most recent first":
        monkeypatch.setattr(si, "RECENT", 8)  # a page ending within 2 rows looks among ~8 first
    return str(request.param)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_st, drop=st.lists(st.integers(0, 40), max_size=5), f=filters())
def test_the_index_answers_as_list_alerts_over_every_status(path: str, rows: list[Any], drop: list[int],
                                                            f: dict[str, Any]) -> None:
    index, want = index_of(rows, drop)
    got = asyncio.run(index.list_alerts(f))
    assert got == list_alerts(list(want.values()), f)


@settings(max_examples=100, deadline=None)
@given(rows=rows_st, later=rows_st, f=filters())
def test_a_query_answers_from_the_state_its_columns_were_applied_at(rows: list[Any], later: list[Any],
                                                                    f: dict[str, Any]) -> None:
    """What a thread's query reads stays as it was at ``apply``, whatever is written meanwhile."""
    index, want = index_of(rows, [])
    index.apply()
    for i, (s, partition) in enumerate(later):  # written while the query runs
        if i % 3 == 2:
            index.discard(s["fingerprint"])
        else:
            index.put(s["fingerprint"], s, partition)
    total, slots = index.select(f)
    expected = list_alerts(list(want.values()), f)
    assert (total, index.page(slots)) == (expected["total"], expected["items"])


def test_a_large_index_is_queried_in_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(si, "THREAD_ROWS", 1)
    seen: list[Any] = []
    real = asyncio.to_thread

    async def to_thread(fn: Any, *a: Any) -> Any:
        seen.append(fn)
        return await real(fn, *a)

    monkeypatch.setattr(si.asyncio, "to_thread", to_thread)
    index = StatusIndex()
    s = empty_status("x:1") | {"alert_id": "a", "last_seen": TIMES[0]}
    index.put("x:1", s, 0)
    got = asyncio.run(index.list_alerts({"offset": 0, "limit": 5}))
    assert got["items"] == [s] and seen == [index.select]


ODD_TIMES = ["2026-11-22T10:00:00+00:00", "2026-13-01T00:00:00Z", "2026-11-22T10:00:00.000000Z",
             "2026-11-22t10:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", "", "Z" * 20]


@st.composite
def odd_statuses(draw: Any) -> dict[str, Any]:
    """Statuses with values the compact forms must leave as they are."""
    s = draw(statuses())
    for name in ("first_seen", "last_seen", "status_changed_at"):
        if draw(st.booleans()):
            s[name] = draw(st.sampled_from(ODD_TIMES) | st.integers(-5, 5) | st.text(max_size=27))
    if draw(st.booleans()):
        s["entity"] = draw(st.sampled_from([None, [], "BTC", {"symbol": 1}, {"venue": "x"}, {"symbol": "BTC", "x": 1},
                                            {"run_id": "r", "account_id": "A"}]))
    if draw(st.booleans()):
        s["alert_id"] = draw(st.sampled_from([5, True, "3F2B1C9E-4D5A-4B6C-8D7E-9F0A1B2C3D4E", "g" * 36,
                                              "3f2b1c9e-4d5a-4b6c-8d7e-9f0a1b2c3d4"]))
    return s


@given(s=statuses() | odd_statuses() | st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1)
                                                      | st.text(max_size=5) | st.none() | st.booleans()),
       fp=st.text(max_size=5))
def test_a_record_reads_back_as_the_same_dict_in_the_same_order(s: dict[str, Any], fp: str) -> None:
    fp = s.get("fingerprint", fp) if isinstance(s.get("fingerprint", fp), str) else fp
    back = decode(fp, encode(fp, s))
    assert back == s and list(back) == list(s)


def test_the_fields_are_the_fold_s_keys() -> None:
    assert ("fingerprint", *FIELDS) == tuple(empty_status("x"))


def test_a_canonical_status_is_kept_compactly() -> None:
    s = empty_status("order_rejected:ACC0000123:BTC-USD:strat-7") | {
        "alert_id": "3f2b1c9e-4d5a-4b6c-8d7e-9f0a1b2c3d4e", "notified_alert_id": "3f2b1c9e-4d5a-4b6c-8d7e-9f0a1b2c3d4e",
        "type": "order_rejected", "severity": 3, "summary": "rejected", "occurrences": 1,
        "first_seen": TIMES[0], "last_seen": TIMES[0]}
    assert len(encode(s["fingerprint"], s)) < 120  # the dict was ~950 bytes in memory


fold_times = st.sampled_from(TIMES) | st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2200, 1, 1),
                                                  timezones=st.just(dt.UTC)).map(iso)


@given(a=fold_times, b=fold_times)
def test_the_order_key_orders_as_the_text_of_the_fold_s_times(a: str, b: str) -> None:
    assert (order_key(a) < order_key(b)) == (a < b)
    assert (order_key(a) == order_key(b)) == (a == b)
    t = dt.datetime.fromisoformat(a.replace("Z", "+00:00"))
    assert int(si.key_time_us(si.np.array([order_key(a)]))[0]) == si.time_us(t)


@settings(max_examples=100, deadline=None)
@given(rows=rows_st, hours=st.sampled_from([0, 1, 24]))
def test_the_stats_fallback_sums_as_before(rows: list[Any], hours: int) -> None:
    index, want = index_of(rows, [])
    index.apply()
    now = T0 + dt.timedelta(hours=hours, microseconds=1)
    old = stats_from_statuses(list(want.values()), now)
    by_sev, by_type = index.stats_since(iso(now - dt.timedelta(hours=24)))
    assert by_sev == old["by_severity"] and by_type == old["by_type"]


def test_the_index_is_the_table_s_mapping() -> None:
    index = StatusIndex()
    s = empty_status("k") | {"alert_id": "a"}
    index.put("k", s, 2)
    assert index["k"] == s and index.get("k") == s and index.get("nope") is None
    assert "k" in index and len(index) == 1 and list(index) == ["k"] and index.partition_of("k") == 2
    assert index["k"] is not index["k"]  # decoded on every read: a caller's change is its own
    del index["k"]
    assert "k" not in index and len(index) == 0 and index.partition_of("k") is None
    with pytest.raises(KeyError):
        del index["k"]


_offsets = itertools.count()


def changelog_event(key: str, value: Any, partition: int, offset: int | None = None) -> Any:
    return SimpleNamespace(key=key, value=value,
                           message=SimpleNamespace(value=None if value is None else b"{...}", partition=partition,
                                                   offset=next(_offsets) if offset is None else offset,
                                                   tp=TP("P-status-changelog", partition)))


def test_the_store_applies_changelog_records_with_their_partition_and_tombstones_as_deletes() -> None:
    store = StatusStore.__new__(StatusStore)
    store.__post_init__()
    a, b = empty_status("a") | {"alert_id": "1"}, empty_status("b") | {"alert_id": "2"}
    store.apply_changelog_batch([changelog_event("a", a, 1), changelog_event("b", b, 3), changelog_event("a", None, 1),
                                 changelog_event("c", None, 0)], to_key=lambda k: k, to_value=lambda v: v)
    index = store.data
    assert dict(index.items()) == {"b": b} and index.partition_of("b") == 3
    assert asyncio.run(index.list_alerts({"offset": 0, "limit": 5}))["items"] == [b]



def test_a_rebalance_does_not_set_a_status_back_to_a_record_it_holds_or_has_folded_past() -> None:
    """The writer's own records, once acknowledged, are held (``note_persisted``); a
    rebalance's recovery starts there (Faust reads the last held record again) and what it
    reads at or below it is not applied: a count folded past it by a batch whose records were
    not acknowledged yet stays."""
    store = StatusStore.__new__(StatusStore)
    store.__post_init__()
    tp = TP("P-status-changelog", 2)
    old, newer = empty_status("x") | {"occurrences": 40}, empty_status("x") | {"occurrences": 60}
    store.data.put("x", old, 2)
    store.set_persisted_offset(tp, 7)  # its record acknowledged at offset 7
    store.data.put("x", newer, 2)  # the next batch folded, its record still on its way
    assert store.persisted_offset(tp) == 7
    store.apply_changelog_batch([changelog_event("x", old, 2, offset=5), changelog_event("x", old, 2, offset=7)],
                                to_key=lambda k: k, to_value=lambda v: v)
    assert store.data["x"]["occurrences"] == 60
    other = empty_status("x") | {"occurrences": 61}  # another worker's write after it: applied
    store.apply_changelog_batch([changelog_event("x", other, 2, offset=8)], to_key=lambda k: k, to_value=lambda v: v)
    assert store.data["x"]["occurrences"] == 61 and store.persisted_offset(tp) == 8
    store.set_persisted_offset(tp, 3)  # never backwards
    assert store.persisted_offset(tp) == 8 and store.persisted_offset(TP("P-status-changelog", 0)) is None


NOW = T0 + dt.timedelta(days=3)


@settings(max_examples=200, deadline=None)
@given(rows=rows_st, owned=st.sets(st.integers(0, 3)), retention=st.sampled_from([1, 3600, 2 * 86400, 10 * 86400]))
def test_the_sweep_deletes_exactly_the_expired_statuses_of_its_partitions(rows: list[Any], owned: set[int],
                                                                          retention: int) -> None:
    index, want = index_of(rows, [])
    parts = {s["fingerprint"]: p for s, p in rows}
    index.apply()
    out = expired_statuses(index, NOW, retention, owned)
    expected = {fp for fp, s in want.items() if parts[fp] in owned and status_expiry(s, NOW, retention).expired}
    assert {fp for fp, _ in out} == expected and len(out) == len(expected)
    assert all(parts[fp] == p for fp, p in out)  # each tombstone to the partition its last record went to
    assert set(index) == set(want) - expected


def test_a_first_page_is_found_among_the_most_recent_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(si, "SMALL", 0)
    monkeypatch.setattr(si, "RECENT", 20)
    index, want = StatusIndex(), {}
    for i in range(100):  # ties of three: every row's time is shared with two others
        s = empty_status(f"fp:{i % 7}:{i}") | {"alert_id": "a", "status": STATUSES[i % 4], "severity": 1 + i % 3,
                                               "last_seen": iso(T0 + dt.timedelta(seconds=i // 3))}
        index.put(s["fingerprint"], s, 0)
        want[s["fingerprint"]] = s
    for f in ({"offset": 0, "limit": 5}, {"offset": 2, "limit": 3, "status": {"active"}},
              {"offset": 0, "limit": 5, "severity": 2, "status": {"resolved", "dismissed"}}):
        assert asyncio.run(index.list_alerts(f)) == list_alerts(list(want.values()), f)
    assert index._cut is not None  # noqa: SLF001 - the recent rows were looked among


@given(t=st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31), timezones=st.just(dt.UTC)))
def test_a_fold_time_is_kept_as_its_microseconds_and_read_back_as_its_text(t: dt.datetime) -> None:
    text = iso(t)
    us = si.fold_time_us(text)
    assert us == si.time_us(t) and si._time_text(us) == text  # noqa: SLF001
