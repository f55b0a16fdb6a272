"""The throttle writes its table's changelog records itself (agents/throttle.py): the bytes
must be those Faust's own send would write, so recovery and compaction see one format."""

from __future__ import annotations

import uuid

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.core.settings import Settings
from tocsin.core.tables import changelog_record
from tocsin.decisions.throttle import WindowState, alert_key
from tocsin.schemas.codec import dumps
from tocsin.streams.app import build

RT = build(Settings(kafka_bootstrap="127.0.0.1:1", table_store="memory"), record=False)  # bytes, not the store
TABLE = RT.tables.throttle


@settings(max_examples=200)
@given(fp=st.text(min_size=1, max_size=80), ts=st.floats(0, 4e9, allow_nan=False),
       suppressed=st.integers(0, 1 << 30), partition=st.integers(0, 3))
def test_changelog_bytes_are_fausts(fp: str, ts: float, suppressed: int, partition: int) -> None:
    table = TABLE.table
    topic = table.changelog_topic
    state = WindowState(alert_key(uuid.uuid4()), suppressed)
    for key, value in TABLE.store(fp, ts, state, partition):
        assert orjson.dumps(key) == topic.prepare_key(key, table.key_serializer)[0]
        assert orjson.dumps(value) == topic.prepare_value(value, table.value_serializer)[0]
        assert WindowState.from_value(orjson.loads(orjson.dumps(value))) == state
        assert TABLE.get(fp, ts) == state
        # indexed for Faust's expiry like its own __setitem__ does
        assert key in table._partition_timestamp_keys[(partition, key[1][1])]


@settings(max_examples=100)
@given(key=st.text(min_size=1, max_size=80),
       value=st.sampled_from(["sent", "dead"]) | st.fixed_dictionaries(
           {"status": st.sampled_from(["active", "resolved"]), "occurrences": st.integers(0, 10**9),
            "summary": st.text(max_size=40), "entity": st.dictionaries(st.text(max_size=8), st.text(max_size=8))}))
def test_table_write_bytes_are_fausts(key: str, value: object) -> None:
    """core/tables.changelog_record makes the changelog record itself (sent through the
    Outbox): the bytes Faust's would be, to the partition given, the store written at once."""
    for table in (RT.tables.deliveries, RT.tables.status):
        topic = table.changelog_topic
        assert orjson.dumps(key) == topic.prepare_key(key, table.key_serializer)[0]
        assert dumps(value) == topic.prepare_value(value, table.value_serializer)[0]
        assert changelog_record(table, key, value, 3) == (
            topic.get_topic_name(), topic.prepare_key(key, table.key_serializer)[0],
            topic.prepare_value(value, table.value_serializer)[0], 3)
        assert table.data[key] == value
