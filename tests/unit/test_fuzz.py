"""Fuzzers at scale over Tocsin's three parsers of untrusted input (issue #14): the alert
validator (bytes from ``P.alerts``), the routing-file loader (TOML from the operator) and the
API's query parameters (from any HTTP client). Each takes anything and answers with a value
or Tocsin's own error carrying a message, never another exception.

Marked ``fuzz``: thousands of examples, derandomized (the same ones every run, no example
database), a few tens of seconds in all. ``TOCSIN_FUZZ_EXAMPLES=20000`` explores further;
``-m "not fuzz"`` leaves them out. A counterexample they found is pinned as an explicit case
next to its fuzzer.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import string
import tomllib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import MultiDict

from tocsin.decisions.routing import CHANNELS, TOP_LEVEL_KEYS, RoutingPolicy, load_policy
from tocsin.errors import ConfigError, RoutingError
from tocsin.schemas.alert import (
    DETAILS_MAX_BYTES,
    ENTITY_MAX,
    FINGERPRINT_MAX,
    SOURCE_MAX,
    SUMMARY_MAX,
    TYPE_RE,
    AlertEvent,
    short_repr,
)
from tocsin.schemas.codec import dumps, loads
from tocsin.schemas.messages import InvalidAlert, SourcePosition
from tocsin.schemas.validate import DEFAULT_LIMITS, ERROR_MAX, MAX_ERRORS, validate_raw
from tocsin.web.api import MAX_LIMIT, STATUSES, BadRequest, list_alerts, parse_filters

#: examples per fuzzer; each runs in a few seconds at this count
EXAMPLES = int(os.environ.get("TOCSIN_FUZZ_EXAMPLES", "600"))
SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def fuzzer(test: Callable[..., None]) -> Callable[..., None]:
    """A fuzzer: many derandomized examples, marked ``fuzz``."""
    return pytest.mark.fuzz(SETTINGS(test))  # type: ignore[no-any-return]


# ================================================================ validate_raw

POS = SourcePosition(topic="tocsin.alerts", partition=1, offset=7)
#: the worker's clock: a parameter, never the wall clock
NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
VALID: dict[str, Any] = {"type": "db_write_fail", "severity": 2, "summary": "orders db down",
                         "event_timestamp": "2025-06-01T11:59:00Z"}
#: what an error line looks like: a location (field path, or "event"), then why
ERROR_LINE = re.compile(r"^\S[^\n]*?: \S", re.DOTALL)


def check_validate(raw: bytes | None, key: bytes | None = None) -> AlertEvent | InvalidAlert:
    """validate_raw's contract for any input: a valid, bounded event or a rejection with clear
    errors, both encodable for their topic; and the same answer a second time (a replay)."""
    result = validate_raw(raw, key, POS, now=NOW)
    again = validate_raw(raw, key, POS, now=NOW)
    if isinstance(result, InvalidAlert):
        assert isinstance(again, InvalidAlert) and again.errors == result.errors
        assert 1 <= len(result.errors) <= MAX_ERRORS + 1
        for e in result.errors:
            assert isinstance(e, str) and len(e) <= ERROR_MAX and ERROR_LINE.match(e) and e.isprintable(), e
            assert "Traceback" not in e and "object at 0x" not in e, e
        InvalidAlert.model_validate(loads(dumps(result)))
        return result
    assert isinstance(result, AlertEvent), type(result)
    assert isinstance(again, AlertEvent) and dumps(again) == dumps(result)
    assert TYPE_RE.match(result.type) and result.severity in (1, 2, 3)
    assert 1 <= len(result.summary) <= SUMMARY_MAX and result.summary.strip() == result.summary
    assert len(result.fingerprint) <= FINGERPRINT_MAX and len(result.resolves or "") <= FINGERPRINT_MAX
    assert len(result.source or "") <= SOURCE_MAX
    assert all(len(v) <= ENTITY_MAX for v in result.entity.model_dump(exclude_none=True).values())
    assert len(orjson.dumps(result.details)) <= DETAILS_MAX_BYTES
    assert result.event_timestamp.utcoffset() == dt.timedelta(0)
    assert (result.event_timestamp - NOW).total_seconds() <= DEFAULT_LIMITS.max_future_skew_s
    # what the throttle reads back off the topic is the same event
    assert AlertEvent.model_validate(loads(dumps(result)), context={"internal": True}) == result
    return result


json_scalars = (st.none() | st.booleans() | st.integers(-(2**80), 2**80)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
json_values = st.recursive(
    json_scalars,
    lambda c: st.lists(c, max_size=6) | st.dictionaries(st.text(max_size=12), c, max_size=6),
    max_leaves=40,
)
#: strings a parser trips on: the edges of each field's rules
edge_text = st.sampled_from([
    "", " ", "\t\n", "\x00", "\u200b", "\ufeff", "é", "ß", "İ", "\u0661", "𝟙", "😀", "a" * 64, "a" * 65,
    "x" * 255, "x" * 256, "y" * 512, "y" * 513, "SEV", "SEV0", "sev4", "SEV-1", " SEV1 ", "1.0", "+1",
    "0x1", "1_0", "١", "null", "true", "NaN", "-0",
]) | st.text(alphabet=string.printable, max_size=30) | st.text(max_size=30)
timestamps = st.sampled_from([
    "2025-06-01T12:00:00Z", "2025-06-01t12:00:00z", "2025-06-01 12:00:00+00:00", "2025-06-01T12:00:00",
    "2025-06-01", "2025-06-01T12:00:60Z", "2025-06-01T24:00:00Z", "2025-02-30T00:00:00Z",
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59Z",
    "2025-06-01T12:00:00.123456789Z", "2025-06-01T12:00:00+24:00", "2025-06-01T12:00:00+23:59",
    "2025-W22-7T12:00:00Z", "2025-152T12:00:00Z", "20250601T120000Z", "2025-06-01T12:00Z",
    "2025-06-01T12:05:01Z", "2025-06-01T12:04:59Z", "T", " ", "",
]) | st.datetimes(timezones=st.timezones()).map(dt.datetime.isoformat) | edge_text
numbers = st.sampled_from([0, 1, 2, 3, 4, -1, 1.0, 2.0, 2.5, 3.0000001, 1e308, -0.0, 2**63, 2**64, True, False])
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "alert_id": st.uuids().map(str) | st.uuids().map(lambda u: u.hex.upper())
    | st.uuids().map(lambda u: "{" + str(u) + "}") | st.uuids().map(lambda u: u.urn) | edge_text | numbers,
    "type": edge_text | st.from_regex(TYPE_RE, fullmatch=True) | numbers,
    "severity": numbers | edge_text,
    "event_timestamp": timestamps | numbers,
    "fingerprint": edge_text | st.text(min_size=500, max_size=520) | numbers,
    "entity": st.fixed_dictionaries({}, optional={k: edge_text | numbers | st.text(min_size=250, max_size=260)
                                                  for k in ("account_id", "symbol", "strategy_id", "run_id")})
    | st.dictionaries(edge_text, json_values, max_size=3) | json_values,
    "summary": edge_text | st.text(min_size=250, max_size=300) | numbers,
    "details": st.dictionaries(st.text(max_size=20), json_values | st.text(min_size=500, max_size=700),
                               max_size=30) | json_values,
    "source": edge_text | st.text(min_size=250, max_size=260) | numbers,
    "action": st.sampled_from(["trigger", "resolve", "acknowledge", "TRIGGER", ""]) | numbers,
    "resolves": edge_text | st.text(min_size=500, max_size=520) | numbers,
    "requires_action": st.booleans() | numbers | edge_text,
}


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with fields replaced, dropped, or added: most of the rules' edges."""
    doc = dict(VALID)
    for name in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=8, unique=True)):
        if draw(st.integers(0, 5)) == 0:
            doc.pop(name, None)
        else:
            doc[name] = draw(FIELDS[name])
    for extra in draw(st.lists(edge_text, max_size=2)):
        doc[extra] = draw(json_values)
    return doc


def encode(value: Any, **layout: Any) -> bytes:
    """JSON as any producer may write it (integers beyond 64 bits included)."""
    return json.dumps(value, ensure_ascii=False, **layout).encode()


def deep(depth: int, kind: str) -> bytes:
    inner = {"list": ("[", "]"), "object": ('{"a":', "}")}[kind]
    details = inner[0] * depth + "1" + inner[1] * depth
    return ('{"type":"db_write_fail","severity":1,"summary":"s","event_timestamp":"2025-06-01T12:00:00Z",'
            f'"details":{{"d":{details}}}}}').encode()


@fuzzer
@given(st.binary(max_size=4096), st.none() | st.binary(max_size=600))
def test_validate_any_bytes(raw: bytes, key: bytes | None) -> None:
    check_validate(raw, key)


@fuzzer
@given(json_values)
def test_validate_any_json(value: Any) -> None:
    check_validate(encode(value))


@fuzzer
@given(events(), st.sampled_from([{"separators": (",", ":")}, {"sort_keys": True}, {"indent": 2}]))
def test_validate_events_at_the_edges(doc: dict[str, Any], layout: dict[str, Any]) -> None:
    result = check_validate(encode(doc, **layout), b"k")
    if isinstance(result, InvalidAlert):
        # an error is located at the field it is about (or a field the producer added), or
        # at the event as a whole
        where = [*FIELDS, *doc, *(short_repr(k, 64) for k in doc), *(k[:61] + "..." for k in doc), "event"]
        for e in result.errors:
            assert e.startswith(tuple(p for k in where for p in (k + ": ", k + "."))), e


@fuzzer
@given(events(), st.integers(0, 200), st.binary(min_size=1, max_size=6))
def test_validate_corrupted_events(doc: dict[str, Any], at: int, junk: bytes) -> None:
    raw = encode(doc)
    cut = min(at, len(raw))
    check_validate(raw[:cut] + junk + raw[cut:])
    check_validate(raw[:cut])


@pytest.mark.parametrize("depth", [30, 33, 200, 1000, 1023, 1024, 5000])
@pytest.mark.parametrize("kind", ["list", "object"])
def test_validate_deep_nesting(depth: int, kind: str) -> None:
    result = check_validate(deep(depth, kind))
    if depth >= 1024:  # past orjson's depth limit: refused as JSON, not a RecursionError
        assert isinstance(result, InvalidAlert) and "invalid JSON" in result.errors[0]


# ================================================================ the routing file


def toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else toml_str(k)


def toml_str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isascii() and ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\U{ord(ch):08X}")
    return '"' + "".join(out) + '"'


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return toml_str(v)
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    assert isinstance(v, dict)
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def toml_document(doc: dict[str, Any]) -> str:
    """Top-level tables as [sections] (with [a.b] sub-tables), the rest as key = value."""
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(f"\n[{toml_key(k)}]")
            lines += [f"{toml_key(sk)} = {toml_value(sv)}" for sk, sv in v.items()]
    return "\n".join(lines) + "\n"


destinations = (st.builds(lambda c, n: f"{c}:{n}", st.sampled_from([*CHANNELS, "sms", "Webhook", ""]),
                          st.sampled_from(["default", "risk", "", "a:b", "é"]))
                | st.sampled_from(["webhook", "console:", ":default", "webhook:default "]))
toml_scalars = (st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=12)
                | st.datetimes(timezones=st.none() | st.just(dt.UTC)) | st.dates() | destinations)
toml_values = st.recursive(
    toml_scalars,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=12,
)
receiver_values = st.fixed_dictionaries({}, optional={
    "max_attempts": st.integers(-2, 102) | toml_values,
    "backoff_s": st.lists(st.floats() | st.integers(-1, 10**12), max_size=4) | toml_values,
    "failover": st.lists(destinations, max_size=3) | toml_values,
    "rate_per_s": st.floats() | st.integers(-1, 5) | toml_values,
    "burst": st.integers(-1, 5) | toml_values,
    "allow_mentions": st.booleans() | toml_values,
    "unknown": toml_values,
})
SECTIONS: dict[str, st.SearchStrategy[Any]] = {
    "always": st.lists(destinations, max_size=3) | toml_values,
    "severity": st.dictionaries(st.sampled_from(["1", "2", "3", "0", "4", "01", "+1", " 2", "١", "x", "1_0"]),
                                st.lists(destinations, max_size=3) | toml_values, max_size=4) | toml_values,
    "types": st.dictionaries(st.text(max_size=10), st.lists(destinations, max_size=3) | toml_values,
                             max_size=3) | toml_values,
    "receivers": st.dictionaries(st.sampled_from(["default", "webhook:default", "slack:ops", "email:risk"])
                                 | destinations, receiver_values | toml_values, max_size=3) | toml_values,
    "destinations": st.dictionaries(destinations, st.dictionaries(
        st.sampled_from(["url_env", "to_env", "url", "secret_env", "_env"]), st.text(max_size=8) | toml_values,
        max_size=3) | toml_values, max_size=3) | toml_values,
    "unknown": toml_values,
}


@st.composite
def routing_documents(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=5, unique=True))
    return {name: draw(SECTIONS[name]) for name in names}


@pytest.fixture(scope="module")
def routing_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("routing")


def check_load(path: Path, data: bytes) -> RoutingPolicy | RoutingError:
    """load_policy's contract: a policy whose every destination is channel:name, or a
    RoutingError (a ConfigError naming TOCSIN_ROUTING_FILE) with a message."""
    path.write_bytes(data)
    try:
        policy = load_policy(path)
    except RoutingError as exc:
        assert isinstance(exc, ConfigError) and exc.setting == "TOCSIN_ROUTING_FILE"
        assert str(exc).startswith("TOCSIN_ROUTING_FILE: ") and len(str(exc)) > len("TOCSIN_ROUTING_FILE: ")
        return exc
    named = [*policy.always, *(d for ds in policy.by_severity.values() for d in ds),
             *(d for ds in policy.by_type.values() for d in ds), *policy.receivers, *policy.destinations]
    assert all(d.split(":", 1)[0] in CHANNELS for d in named), named
    assert set(policy.by_severity) <= {1, 2, 3}
    for rp in (policy.default_receiver, *policy.receivers.values()):
        assert rp.max_attempts is None or 1 <= rp.max_attempts <= 100
        assert rp.backoff_s and all(math.isfinite(b) and b >= 0 for b in rp.backoff_s)
        assert rp.rate_per_s is None or (math.isfinite(rp.rate_per_s) and rp.rate_per_s > 0)
    return policy


@fuzzer
@given(routing_documents())
def test_routing_any_document(routing_dir: Path, doc: dict[str, Any]) -> None:
    text = toml_document(doc)
    assert tomllib.loads(text) is not None  # the generator writes TOML
    result = check_load(routing_dir / "routing.toml", text.encode())
    if isinstance(result, RoutingPolicy):
        assert set(doc) <= set(TOP_LEVEL_KEYS)


@fuzzer
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_routing_any_bytes(routing_dir: Path, data: bytes) -> None:
    check_load(routing_dir / "routing.toml", data)


@fuzzer
@given(routing_documents(), st.integers(0, 400), st.binary(min_size=1, max_size=4))
def test_routing_corrupted_documents(routing_dir: Path, doc: dict[str, Any], at: int, junk: bytes) -> None:
    data = toml_document(doc).encode()
    cut = min(at, len(data))
    check_load(routing_dir / "routing.toml", data[:cut] + junk + data[cut:])


# ================================================================ the API's query parameters

NAMES = ["severity", "type", "status", "symbol", "strategy_id", "since", "until", "offset", "limit"]
query_text = st.sampled_from([
    "", " ", "0", "1", "2", "3", "4", "-1", "+1", " 2 ", "1_0", "0_2", "١", "²", "00", "1.0", "1e3", "500", "501",
    "9" * 5000, "-0", "SEV1", "sev2", "SEV 3", "SEV+2", "SEV", "sevsev1", "active", "active,resolved",
    ",,", "active, dismissed ,", "open", "ACTIVE", "2025-06-01T12:00:00Z", "2025-06-01T12:00:00",
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2025-06-01", "yesterday", "\x00", "é",
]) | st.text(max_size=20) | st.integers().map(str)
STATUS_ROWS = [
    {"fingerprint": f"fp:{i}", "alert_id": str(uuid.UUID(int=i + 1)), "type": t, "severity": s, "status": st_,
     "entity": {"symbol": sym, "strategy_id": "s1"}, "last_seen": last}
    for i, (t, s, st_, sym, last) in enumerate([
        ("db_write_fail", 1, "active", "BTC", "2025-06-01T11:00:00Z"),
        ("order_rejected", 2, "resolved", "ETH", "0001-01-01T00:00:00Z"),
        ("order_rejected", 3, "acknowledged", "", "9999-12-31T23:59:59Z"),
        ("x", 2, "dismissed", "BTC", None),
    ])
]


def check_filters(q: Any) -> dict[str, Any] | BadRequest:
    """parse_filters' contract: filters within their bounds, or BadRequest naming the
    parameter; the filters then page the status table without error."""
    try:
        f = parse_filters(q)
    except BadRequest as exc:
        message = str(exc)
        assert message and message.split(":", 1)[0].split(" ", 1)[0] in NAMES, message
        return exc
    assert f["offset"] >= 0 and 1 <= f["limit"] <= MAX_LIMIT
    assert f.get("severity", 1) in (1, 2, 3)
    assert set(f.get("status", STATUSES)) <= set(STATUSES) and f.get("status", {"x"})
    for name in ("since", "until"):
        assert name not in f or f[name].utcoffset() == dt.timedelta(0)
    page = list_alerts(STATUS_ROWS, f)
    assert len(page["items"]) <= f["limit"] and page["total"] <= len(STATUS_ROWS)
    return f


@fuzzer
@given(st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=10), query_text, max_size=9))
def test_query_parameters_any_mapping(q: dict[str, str]) -> None:
    check_filters(q)


@fuzzer
@given(st.lists(st.tuples(st.sampled_from(NAMES), query_text), max_size=12))
def test_query_parameters_repeated(pairs: list[tuple[str, str]]) -> None:
    """As aiohttp hands them over: a multidict, a name possibly repeated (the first counts)."""
    check_filters(MultiDict(pairs))


# ================================================================ found by the fuzzers


@pytest.mark.parametrize(("raw", "error"), [
    pytest.param(b'{" ": null}', "' ': Extra inputs are not permitted", id="a field named by a space"),
    pytest.param(b'{"": 1}', "'': Extra inputs are not permitted", id="a field with no name"),
    pytest.param(b'{"a\\nERROR forged": 1}', "'a\\nERROR forged': Extra inputs are not permitted",
                 id="a field name holding a newline"),
    pytest.param(b'{"entity": {"\\u200b": "x"}}', "entity.'\\u200b': Extra inputs are not permitted",
                 id="an invisible entity field"),
    pytest.param(b'{"' + b"y" * 512 + b'": 1}', "y" * 61 + "...: Extra inputs are not permitted",
                 id="a field name as long as the line"),
    pytest.param(b'{"alert_id": "\\r"}', "alert_id: Input should be a valid UUID, invalid character: found `\\r` at 0",
                 id="pydantic quoting a control character"),
])
def test_validate_found(raw: bytes, error: str) -> None:
    """Each was an error line not saying which field (" : Extra inputs..."), spanning two,
    carrying a control character, or cut before it said why."""
    result = check_validate(raw)
    assert isinstance(result, InvalidAlert) and error in result.errors, result.errors


FOUND_ROUTING: list[Any] = [
    pytest.param(b"always = " + b"[" * 500 + b"]" * 500 + b"\n", id="arrays nested 500 deep: RecursionError"),
    pytest.param(b"a = " + b"{b = " * 400 + b"1" + b"}" * 400 + b"\n", id="tables nested 400 deep: RecursionError"),
    pytest.param(b'always = ["console:default"]\n# \xff\xfe\n', id="not UTF-8: UnicodeDecodeError"),
]


@pytest.mark.parametrize("data", FOUND_ROUTING)
def test_routing_file_found(routing_dir: Path, data: bytes) -> None:
    assert isinstance(check_load(routing_dir / "found.toml", data), RoutingError)


def test_routing_file_that_is_a_directory(routing_dir: Path) -> None:
    with pytest.raises(RoutingError, match="TOCSIN_ROUTING_FILE: "):
        load_policy(routing_dir)


@pytest.mark.parametrize("status", [",", " , ", ",,,"])
def test_query_parameters_found(status: str) -> None:
    """A status list naming none was an empty filter that matched every alert out; now, as
    ``status=``, no filter."""
    f = check_filters({"status": status})
    assert isinstance(f, dict) and "status" not in f
    assert list_alerts(STATUS_ROWS, f)["total"] == len(STATUS_ROWS)
