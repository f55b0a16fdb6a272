"""What the throttle keeps in memory, keyed by what producers send, is bounded; the input limits
are the settings'."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import orjson
import pytest

from tocsin.agents.batches import partition_for_text
from tocsin.agents.throttle import ROUTES_MAX, Throttle
from tocsin.core.settings import Settings, load_settings
from tocsin.errors import ConfigError
from tocsin.schemas.messages import InvalidAlert
from tocsin.streams.app import build

RT = build(Settings(kafka_bootstrap="127.0.0.1:1", max_message_bytes=2048, max_future_skew_s=60), record=False)
NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def test_routes_remembered_per_type_are_bounded() -> None:
    throttle = Throttle(RT)
    for i in range(ROUTES_MAX * 3):
        throttle.routes(3, f"invented_{i}")
        assert len(throttle._routes) <= ROUTES_MAX  # noqa: SLF001


def test_the_partition_cache_is_bounded_by_count_and_fingerprint_length() -> None:
    info = partition_for_text.cache_info()
    assert info.maxsize is not None and info.maxsize * 512 <= 10 << 20


def message(offset: int, value: bytes) -> SimpleNamespace:
    return SimpleNamespace(topic=RT.topics.alerts.get_topic_name(), partition=0, offset=offset, key=b"k", value=value)


@pytest.mark.parametrize(("value", "error"), [
    (b" " * 2049, "event: message is 2,049 bytes, over the 2,048-byte limit (TOCSIN_MAX_MESSAGE_BYTES)"),
    (orjson.dumps({"type": "x", "severity": 1, "summary": "s", "event_timestamp": "2024-05-01T12:01:01Z"}),
     "over the 60 s limit (TOCSIN_MAX_FUTURE_SKEW_S)"),
])
def test_the_throttle_validates_with_the_settings_limits_and_its_clock(value: bytes, error: str) -> None:
    throttle = Throttle(RT)
    out: list = []
    throttle.process_safely(message(7, value), out, NOW)
    assert [topic for topic, *_ in out] == [throttle.invalid_name]
    kept = InvalidAlert.model_validate(orjson.loads(out[0][2]))
    assert error in kept.errors[0] and kept.source.offset == 7


@pytest.mark.parametrize(("env", "name"), [({"max_message_bytes": 10}, "TOCSIN_MAX_MESSAGE_BYTES"),
                                           ({"max_future_skew_s": -1}, "TOCSIN_MAX_FUTURE_SKEW_S"),
                                           ({"delivery_read_ahead_bytes": 0}, "TOCSIN_DELIVERY_READ_AHEAD_BYTES")])
def test_bad_limits_fail_at_start_with_the_settings_name(env: dict, name: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(kafka_bootstrap="127.0.0.1:1", **env)
    assert name in str(info.value)


def test_defaults() -> None:
    s = load_settings(kafka_bootstrap="127.0.0.1:1")
    assert (s.max_message_bytes, s.max_future_skew_s, s.delivery_read_ahead_bytes) == (65_536, 300.0, 64 << 20)
