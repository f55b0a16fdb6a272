"""``GET /api/alerts/charts``'s parameters: the window and bucket sizes, or the bad one named."""

from __future__ import annotations

import datetime as dt

import pytest

from tocsin.web.auth import Surface, surface_of
from tocsin.web.charts import SERIES, BadRequest, Window, parse_window

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)


@pytest.mark.parametrize(("query", "expected"), [
    ({}, Window(NOW - 24 * H, NOW, 60, 3600)),
    ({"until": "2025-06-01T10:00:00Z"}, Window(NOW - 26 * H, NOW - 2 * H)),
    ({"since": "2025-06-01T11:00:00+01:00"}, Window(NOW - 2 * H, NOW)),
    ({"since": "2025-05-01T12:00:00Z", "bucket_s": "3600"}, Window(NOW - 31 * 24 * H, NOW, 3600, 3600)),
    ({"bucket_s": "10", "delivery_bucket_s": "60"}, Window(NOW - 24 * H, NOW, 10, 60)),
    ({"bucket_s": "", "until": ""}, Window(NOW - 24 * H, NOW)),
])
def test_window(query: dict[str, str], expected: Window) -> None:
    assert parse_window(query, NOW) == expected


@pytest.mark.parametrize(("query", "message"), [
    ({"since": "yesterday"}, "since: the time is not RFC 3339"),
    ({"until": "2025-06-01T10:00:00"}, "until: the time is naive"),
    ({"since": "2025-06-01T12:00:00Z"}, "since must be before until"),
    ({"since": "2025-06-01T13:00:00Z"}, "since must be before until"),
    ({"since": "2025-04-01T00:00:00Z"}, "the window is at most 31 days"),
    ({"until": "1969-12-31T23:59:59Z"}, "until: out of range"),
    ({"until": "2200-01-01T00:00:00Z"}, "until: out of range"),
    ({"bucket_s": "0"}, "bucket_s: expected 1..86400"),
    ({"bucket_s": "86401"}, "bucket_s: expected 1..86400"),
    ({"delivery_bucket_s": "1.5"}, "delivery_bucket_s: expected a whole number"),
    ({"bucket_s": "5"}, "bucket_s: too small for this window"),              # 17,280 buckets
    ({"since": "2025-05-02T12:00:00Z"}, "bucket_s: too small for this window"),  # 30 days of minutes
])
def test_bad_window(query: dict[str, str], message: str) -> None:
    with pytest.raises(BadRequest, match=f"^{message}"):
        parse_window(query, NOW)


def test_charts_read_as_the_alert_list_does() -> None:
    assert surface_of("GET", "/api/alerts/charts") is Surface.READ
    assert surface_of("POST", "/api/alerts/charts") is Surface.WRITE


def test_every_series_is_a_named_query() -> None:
    from tocsin.infra.clickhouse.queries import query_params

    for name, size in SERIES.values():
        assert set(query_params(name)) == {"since", "until", "bucket_s"}
        assert size in ("bucket_s", "delivery_bucket_s")
