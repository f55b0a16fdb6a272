"""Per-type throttle windows and digests (decisions/windows.py): tables of cases and properties."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tocsin.decisions.routing import RoutingError, parse_policy, problems
from tocsin.decisions.throttle import Verdict, WindowState, bucket_of, decide, dedupe_key_for
from tocsin.decisions.windows import (
    DEFAULT_WINDOWS,
    WindowPolicy,
    default_window,
    digest_count,
    digest_reason,
    digest_text,
    human_duration,
    plan_digest,
    window_for,
    window_lengths,
    window_tag,
)
from tocsin.schemas.alert import AlertEvent
from tocsin.schemas.messages import Outcome

T0 = 1_714_521_600  # 2024-05-01T00:00:00Z, a multiple of 86400 (and 600)
POLICY = WindowPolicy(None, {"order_rejected": 86400, "db_write_fail": 60}, frozenset({"order_rejected"}))


def event(t: float, *, type_: str = "order_rejected", action: str = "trigger", fp: str | None = None) -> AlertEvent:
    return AlertEvent.model_validate({
        "alert_id": uuid.uuid4(), "type": type_, "severity": 2, "summary": "s", "action": action,
        "fingerprint": fp or f"{type_}:ACC1::", "entity": {"account_id": "ACC1"},
        "event_timestamp": dt.datetime.fromtimestamp(t, dt.UTC).isoformat(),
    })


class Throttle:
    """The throttle agent's use of the decisions: per-type window, tagged key, table per key."""

    def __init__(self, policy: WindowPolicy = POLICY, setting_s: int = 600) -> None:
        self.policy, self.default = policy, default_window(policy, setting_s)
        self.rows: dict[str, WindowState] = {}
        self.digests: list[str] = []

    def decide(self, e: AlertEvent) -> Verdict:
        w = window_for(self.policy, e.type, self.default)
        tag = window_tag(w, self.default)
        key = dedupe_key_for(e.fingerprint, bucket_of(e.epoch, w)) + tag
        prev = self.rows.get(dedupe_key_for(e.fingerprint, bucket_of(e.epoch, w) - 1) + tag)
        v = decide(self.rows.get(key), e, w, prev.suppressed if prev else 0, window_tag=tag)
        if v.new_state is not None:
            self.rows[key] = v.new_state
        plan = plan_digest(self.policy, e.type, e.is_recovery, v.outcome, v.suppressed_count, v.dedupe_key,
                           v.bucket, w)
        if plan is not None:
            self.digests.append(plan.dedupe_key)
        return v


# ---------------------------------------------------------------- windows


@pytest.mark.parametrize(("policy", "setting", "alert_type", "window", "tag"), [
    (DEFAULT_WINDOWS, 600, "order_rejected", 600, ""),  # nothing set: the setting
    (WindowPolicy(300), 600, "order_rejected", 300, ""),  # the file's default_s wins
    (POLICY, 600, "order_rejected", 86400, "/86400s"),  # a type's own window
    (POLICY, 600, "db_write_fail", 60, "/60s"),
    (POLICY, 600, "kill_switch_activated", 600, ""),  # a type not listed: the default
    (WindowPolicy(None, {"x": 600}), 600, "x", 600, ""),  # a type's window equal to the default: its keys
], ids=["setting", "default_s", "per type", "shorter", "unlisted", "same as default"])
def test_window_of_a_type(policy: WindowPolicy, setting: int, alert_type: str, window: int, tag: str) -> None:
    default = default_window(policy, setting)
    assert window_for(policy, alert_type, default) == window
    assert window_tag(window, default) == tag


def test_window_lengths_default_first() -> None:
    assert window_lengths(POLICY, 600) == (600, 60, 86400)
    assert window_lengths(DEFAULT_WINDOWS, 600) == (600,)


@pytest.mark.parametrize(("times", "outcomes", "key_bucket"), [
    # order_rejected: 24-hour window, so a repeat 10 h later is still suppressed
    ([0, 60, 36000], ["notify", "suppress", "suppress"], T0 // 86400),
    # the next day: notified again, showing the previous day's count
    ([0, 60, 86400], ["notify", "suppress", "notify"], T0 // 86400),
], ids=["same day", "next day"])
def test_per_type_window_cases(times: list[int], outcomes: list[str], key_bucket: int) -> None:
    t = Throttle()
    verdicts = [t.decide(event(T0 + x)) for x in times]
    assert [v.outcome.value for v in verdicts] == outcomes
    assert verdicts[0].dedupe_key == f"order_rejected:ACC1:::{key_bucket}/86400s"
    if outcomes[-1] == "notify":
        assert verdicts[-1].suppressed_count == 1  # the previous window's count shown


def test_default_window_keys_unchanged() -> None:
    """A type on the default window keeps fingerprint:bucket (delivery ids of before)."""
    v = Throttle().decide(event(T0 + 5, type_="kill_switch_activated"))
    assert v.dedupe_key == f"kill_switch_activated:ACC1:::{(T0 + 5) // 600}"


# ---------------------------------------------------------------- digests


@pytest.mark.parametrize(("policy", "alert_type", "action", "outcome", "count", "planned"), [
    (POLICY, "order_rejected", "trigger", Outcome.SUPPRESS, 1, True),  # first repeat: the digest
    (POLICY, "order_rejected", "trigger", Outcome.SUPPRESS, 2, False),  # planned already
    (POLICY, "order_rejected", "trigger", Outcome.NOTIFY, 0, False),  # nothing suppressed (yet)
    (POLICY, "db_write_fail", "trigger", Outcome.SUPPRESS, 1, False),  # type not asked for
    (WindowPolicy(digest_types=frozenset({"*"})), "db_write_fail", "trigger", Outcome.SUPPRESS, 1, True),
    (POLICY, "order_rejected", "resolve", Outcome.BYPASS, 0, False),  # a recovery: never digested
    (POLICY, "order_rejected", "trigger", Outcome.SILENCED, 1, False),  # silenced: not suppressed
], ids=["first repeat", "later repeat", "notify", "other type", "all types", "recovery", "silenced"])
def test_plan_digest_cases(policy: WindowPolicy, alert_type: str, action: str, outcome: Outcome, count: int,
                           planned: bool) -> None:
    plan = plan_digest(policy, alert_type, action == "resolve", outcome, count, "fp:7/86400s", 7, 86400)
    assert (plan is not None) is planned
    if plan is not None:
        assert plan.dedupe_key == "fp:7/86400s:digest"
        assert plan.window_start == dt.datetime.fromtimestamp(7 * 86400, dt.UTC)
        assert plan.due == dt.datetime.fromtimestamp(8 * 86400, dt.UTC)  # the window's end
        assert plan.decision_id == plan_digest(policy, alert_type, False, outcome, count, "fp:7/86400s", 7,
                                               86400).decision_id  # type: ignore[union-attr]


@pytest.mark.parametrize(("carried", "in_table", "count"), [
    (1, 37, 37),  # the table's count when it fires
    (1, None, 1),  # the window dropped (or another worker's): the carried count
    (5, 3, 5),  # never less than carried
], ids=["read", "carried", "never less"])
def test_digest_count_cases(carried: int, in_table: int | None, count: int) -> None:
    assert digest_count(carried, in_table) == count


@pytest.mark.parametrize(("seconds", "text"), [(600, "10 min"), (86400, "24 h"), (90, "90 s"), (3600, "1 h")])
def test_human_duration(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_digest_text_and_reason() -> None:
    assert digest_text("order_rejected", {"account_id": "ACC1", "symbol": None}, 37, 600) == (
        "order_rejected ACC1 fired 37 more times in the last 10 min")
    assert digest_text("x", {}, 1, 60) == "x fired 1 more time in the last 1 min"
    assert digest_reason(37, 600, dt.datetime.fromtimestamp(T0, dt.UTC)) == (
        "digest: 37 suppressed in the 10 min window from 2024-05-01T00:00:00Z")


# ---------------------------------------------------------------- properties

offsets = st.lists(st.tuples(st.integers(0, 3 * 86400), st.sampled_from(["order_rejected", "db_write_fail", "x"]),
                             st.booleans()), max_size=40)


def run(seq: list[tuple[int, str, bool]], ids: list[uuid.UUID]) -> tuple[list[tuple[Any, ...]], list[str]]:
    t = Throttle()
    out = []
    for (dt_s, type_, recovery), aid in zip(seq, ids, strict=True):
        e = event(T0 + dt_s, type_=type_, action="resolve" if recovery else "trigger")
        e = e.model_copy(update={"alert_id": aid})
        v = t.decide(e)
        out.append((v.outcome, v.dedupe_key, v.suppressed_count))
    return out, t.digests


@given(seq=offsets)
def test_a_replay_decides_the_same(seq: list[tuple[int, str, bool]]) -> None:
    """The same events in the same order: the same verdicts and the same digests (event time only)."""
    ids = [uuid.uuid4() for _ in seq]
    assert run(seq, ids) == run(seq, ids)


@given(seq=offsets)
def test_a_recovery_is_never_muted_nor_digested(seq: list[tuple[int, str, bool]]) -> None:
    out, digests = run(seq, [uuid.uuid4() for _ in seq])
    for (_, _, recovery), (outcome, _, _) in zip(seq, out, strict=True):
        if recovery:
            assert outcome is Outcome.BYPASS
    # one digest per window at most, each for a window that suppressed something
    assert len(digests) == len(set(digests))
    suppressed = {key for outcome, key, _ in out if outcome is Outcome.SUPPRESS}
    assert {d.removesuffix(":digest") for d in digests} <= suppressed


# ---------------------------------------------------------------- the routing file


@pytest.mark.parametrize(("doc", "expected"), [
    ({}, DEFAULT_WINDOWS),
    ({"throttle": {"default_s": 300, "types": {"order_rejected": 86400}},
      "digests": {"types": ["order_rejected"], "receivers": ["email:risk"]}},
     WindowPolicy(300, {"order_rejected": 86400}, frozenset({"order_rejected"}), frozenset({"email:risk"}))),
    ({"digests": {"types": ["*"]}}, WindowPolicy(digest_types=frozenset({"*"}))),
], ids=["none", "all", "every type"])
def test_routing_file_sets_the_windows(doc: dict[str, Any], expected: WindowPolicy) -> None:
    assert parse_policy(doc).windows == expected


@pytest.mark.parametrize(("doc", "message"), [
    ({"throttle": {"default_s": 0}}, "throttle.default_s: seconds, a whole number 1..604800 (7 days)"),
    ({"throttle": {"types": {"order_rejected": "1d"}}},
     "throttle.types.order_rejected: seconds, a whole number 1..604800 (7 days)"),
    ({"throttle": {"types": {"Bad Type": 60}}}, "throttle.types.\"Bad Type\": an alert type"),
    ({"throttle": {"window": 60}}, "throttle.window"),
    ({"digests": {"types": "order_rejected"}}, "digests.types: expected a list of alert types"),
    ({"digests": {"receivers": ["risk"]}}, "digests.receivers[0]: a destination, channel:name"),
], ids=["zero", "text", "bad type", "unknown key", "not a list", "bad receiver"])
def test_routing_file_errors(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(RoutingError) as err:
        parse_policy(doc)
    assert message in str(err.value)
    assert problems(doc)
