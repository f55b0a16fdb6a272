"""The grouping decision (#18 item 2, decisions/grouping.py): tables of cases and properties."""

from __future__ import annotations

import datetime as dt
import uuid
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.agents.grouping import Grouper
from tocsin.decisions.grouping import (
    MEMBERS_MAX,
    GroupRule,
    GroupState,
    admit,
    before,
    catch_up,
    flush,
    group_key,
    group_text,
    member_of,
    notice,
    rule_for,
)
from tocsin.decisions.routing import RoutingError, parse_policy, problems
from tocsin.schemas.alert import AlertEvent

T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z
RULE = GroupRule("g", group_by=("type", "account_id"), group_wait_s=30, group_interval_s=300,
                 repeat_interval_s=3600, resolve_timeout_s=1800, list_max=3)


def event(t: float = T0, *, type_: str = "order_rejected", severity: int = 2, account: str | None = "A1",
          fp: str | None = None, action: str = "trigger", **extra: Any) -> AlertEvent:
    return AlertEvent.model_validate({
        "alert_id": str(uuid.uuid4()), "type": type_, "severity": severity, "summary": f"{type_} s",
        "event_timestamp": dt.datetime.fromtimestamp(t, dt.UTC).isoformat(), "action": action,
        **({"entity": {"account_id": account}} if account else {}),
        **({"fingerprint": fp} if fp else {}), **extra,
    })


def member(fp: str, t: float, severity: int = 2) -> dict[str, Any]:
    return member_of(event(t, fp=fp, severity=severity))


def state(members: dict[str, float], *, next_flush: float, seq: int = 0, notified: tuple[str, ...] = (),
          last_notified: float | None = None) -> GroupState:
    return GroupState("g|k", "g", 0, T0, next_flush, seq, last_notified, notified,
                      {fp: member(fp, t) for fp, t in members.items()})


# -- which rule, which group ------------------------------------------------------------------

A = GroupRule("a", types=("order_rejected",))
B = GroupRule("b", severities=(1,))
ANY = GroupRule("any")


@pytest.mark.parametrize(("ev", "rules", "expected"), [
    (event(type_="order_rejected"), (A, B), "a"),
    (event(type_="db_write_fail", severity=1), (A, B), "b"),
    (event(type_="db_write_fail", severity=2), (A, B), None),
    (event(type_="order_rejected", severity=1), (B, A), "b"),  # the first rule selecting it
    (event(type_="db_write_fail"), (A, ANY), "any"),
    (event(type_="component_recovered"), (ANY,), None),  # a recovery type: never grouped
    (event(type_="order_rejected", action="resolve"), (A, ANY), None),  # a resolve: never grouped
    (event(), (), None),
])
def test_rule_for(ev: AlertEvent, rules: tuple[GroupRule, ...], expected: str | None) -> None:
    r = rule_for(ev, rules)
    assert (r.name if r else None) == expected


@pytest.mark.parametrize(("ev", "group_by", "key"), [
    (event(account="A1"), ("type", "account_id"), "g|type=order_rejected,account_id=A1"),
    (event(account=None), ("type", "account_id"), "g|type=order_rejected,account_id="),
    (event(severity=1), ("severity",), "g|severity=1"),
    (event(details={"cluster": "eu-1"}), ("details.cluster",), "g|details.cluster=eu-1"),
    (event(), ("details.missing",), "g|details.missing="),
    (event(source="risk-svc"), ("source", "type"), "g|source=risk-svc,type=order_rejected"),
])
def test_group_key(ev: AlertEvent, group_by: tuple[str, ...], key: str) -> None:
    assert group_key(ev, GroupRule("g", group_by=group_by)) == key


# -- admitting an alert -------------------------------------------------------------------------


@pytest.mark.parametrize(("before_", "fp", "t", "reason", "members", "next_flush"), [
    (None, "x", T0, "group started", {"x": T0}, T0 + 30),
    (state({"x": T0}, next_flush=T0 + 30), "y", T0 + 5, "joined group", {"x": T0, "y": T0 + 5}, T0 + 30),
    (state({"x": T0}, next_flush=T0 + 30), "x", T0 + 5, "seen again", {"x": T0 + 5}, T0 + 30),
    (state({"x": T0 + 5}, next_flush=T0 + 30), "x", T0 + 5, "already in group", {"x": T0 + 5}, T0 + 30),
    (state({"x": T0 + 5}, next_flush=T0 + 30), "x", T0, "already in group", {"x": T0 + 5}, T0 + 30),
])
def test_admit(before_: GroupState | None, fp: str, t: float, reason: str, members: dict[str, float],
               next_flush: float) -> None:
    a = admit(before_, member(fp, t), RULE, "g|k", 0)
    assert a.reason == reason
    assert {k: m["t"] for k, m in a.state.members.items()} == members
    assert a.state.next_flush == next_flush


def test_admit_past_the_cap_counts() -> None:
    s = state({f"f{i}": T0 for i in range(MEMBERS_MAX)}, next_flush=T0 + 30)
    a = admit(s, member("new", T0), RULE, "g|k", 0)
    assert (a.reason, a.state.more, len(a.state.members)) == ("group full", 1, MEMBERS_MAX)


# -- a flush -----------------------------------------------------------------------------------

F = T0 + 30  # the first flush


@pytest.mark.parametrize(("st_", "notify", "reason", "listed", "after_notified"), [
    # group_wait over: the first notification lists every member up to the flush time
    (state({"x": T0, "y": T0 + 10}, next_flush=F), True, "first notification", ["x", "y"], ("x", "y")),
    # a member after the flush time waits for the next flush
    (state({"x": T0, "y": F + 1}, next_flush=F), True, "first notification", ["x"], ("x",)),
    # a member exactly at the flush time is listed
    (state({"x": T0, "y": F}, next_flush=F), True, "first notification", ["x", "y"], ("x", "y")),
    # a new member since the last notification: changed
    (state({"x": T0, "y": F + 100}, next_flush=F + 300, seq=1, notified=("x",), last_notified=F),
     True, "group changed", ["x", "y"], ("x", "y")),
    # nothing new, repeat interval not over: nothing sent
    (state({"x": T0}, next_flush=F + 300, seq=1, notified=("x",), last_notified=F),
     False, "unchanged", [], ("x",)),
    # a member left (timed out): a subset of the last notification, nothing sent
    (state({"x": F + 299, "y": T0 - 2000}, next_flush=F + 300, seq=1, notified=("x", "y"), last_notified=F),
     False, "unchanged", [], ("x",)),
    # the repeat interval over since the last notification: sent again
    (state({"x": F + 3500}, next_flush=F + 3600, seq=1, notified=("x",), last_notified=F),
     True, "repeat interval elapsed", ["x"], ("x",)),
    # only members after the flush: nothing due yet
    (state({"y": F + 10}, next_flush=F), False, "nothing due", [], ()),
])
def test_flush(st_: GroupState, notify: bool, reason: str, listed: list[str], after_notified: tuple[str, ...]) -> None:
    f = flush(st_, RULE)
    assert (f.notify, f.reason) == (notify, reason)
    assert [m["fingerprint"] for m in f.listed] == listed
    assert f.state is not None and f.state.next_flush == st_.next_flush + RULE.group_interval_s
    assert f.state.notified == after_notified
    assert f.seq == st_.seq + notify


def test_flush_of_an_empty_group_forgets_it() -> None:
    f = flush(state({"x": T0}, next_flush=T0 + 4000, seq=1, notified=("x",), last_notified=F), RULE)
    assert (f.notify, f.reason, f.state) == (False, "group empty", None)


def test_listed_most_severe_first() -> None:
    s = GroupState("g|k", "g", 0, T0, F, members={"a": member("a", T0, 3), "b": member("b", T0 + 1, 1),
                                                    "c": member("c", T0 + 2, 2)})
    assert [m["fingerprint"] for m in flush(s, RULE).listed] == ["b", "c", "a"]


def test_catch_up_takes_every_due_flush_in_order() -> None:
    s = state({"x": T0}, next_flush=F)
    after, flushes = catch_up(s, RULE, F + 3 * 300)
    assert [f.at for f in flushes] == [F, F + 300, F + 600, F + 900]
    assert [f.reason for f in flushes] == ["first notification", "unchanged", "unchanged", "unchanged"]
    assert after is not None and after.next_flush == F + 1200


def test_state_round_trips_through_json() -> None:
    s = state({"x": T0, "y": T0 + 1}, next_flush=F, seq=2, notified=("x",), last_notified=T0)
    assert GroupState.from_value(orjson.loads(orjson.dumps(s.to_value()))) == s


# -- what a notification says ---------------------------------------------------------------------


@pytest.mark.parametrize(("n", "list_max", "lines", "last"), [
    (1, 3, 2, "- [SEV2] order_rejected s (account_id=A1)"),
    (3, 3, 4, "- [SEV2] order_rejected s (account_id=A1)"),
    (5, 3, 5, "and 2 more"),
    (5, 1, 3, "and 4 more"),
])
def test_group_text(n: int, list_max: int, lines: int, last: str) -> None:
    s = state({f"f{i}": T0 + i for i in range(n)}, next_flush=F)
    f = flush(s, GroupRule("g", list_max=list_max))
    text = group_text(notice(f, GroupRule("g", list_max=list_max)))
    assert text.splitlines()[0] == f"{n} alert{'s' if n > 1 else ''} in group g|k"
    assert len(text.splitlines()) == lines
    assert text.splitlines()[-1] == last


def test_a_group_over_the_carried_list_says_how_many() -> None:
    from tocsin.decisions.grouping import CARRIED_MAX
    s = state({f"f{i:03}": T0 for i in range(CARRIED_MAX + 20)}, next_flush=F)
    n = notice(flush(s, RULE), RULE)
    assert (len(n["alerts"]), n["total"]) == (CARRIED_MAX, CARRIED_MAX + 20)
    assert group_text(n).endswith(f"and {CARRIED_MAX + 20 - 3} more")


# -- the routing file's [[groups]] ------------------------------------------------------------------


def test_groups_in_the_routing_file() -> None:
    p = parse_policy({"groups": [{"name": "orders", "types": ["order_rejected"], "group_by": ["type", "account_id"],
                                  "group_wait_s": 10.0, "group_interval_s": 60.0, "repeat_interval_s": 600.0,
                                  "list_max": 2}, {"name": "sev1", "severities": [1]}]})
    assert p.groups == (GroupRule("orders", ("order_rejected",), (), ("type", "account_id"), 10.0, 60.0, 600.0,
                                  3600.0, 2), GroupRule("sev1", severities=(1,)))
    assert parse_policy({}).groups == ()


@pytest.mark.parametrize(("doc", "message"), [
    ({"groups": [{"name": "a", "group_by": ["nope"]}]}, "groups[0].group_by[0]: a label is one of"),
    ({"groups": [{"name": "a", "group_wait_s": 0}]}, "groups[0].group_wait_s: seconds, a number > 0"),
    ({"groups": [{"name": "a", "colour": "red"}]}, "groups[0].colour: unknown key"),
    ({"groups": [{"name": "a"}, {"name": "a"}]}, "groups[1].name: a second group named 'a'"),
    ({"groups": [{"group_by": ["type"]}]}, "groups[0].name:"),
    ({"groups": [{"name": "a", "severities": [4]}]}, "groups[0].severities[0]: not 1, 2 or 3"),
    ({"groups": {"name": "a"}}, "groups: expected an array of tables"),
])
def test_groups_errors_name_the_key(doc: dict[str, Any], message: str) -> None:
    assert problems(doc)[0][1].startswith(message), problems(doc)
    with pytest.raises(RoutingError):
        parse_policy(doc)


# -- properties ----------------------------------------------------------------------------------

FPS = st.sampled_from(["a", "b", "c", "d", "e"])
ARRIVALS = st.lists(st.tuples(st.floats(0, 5000, allow_nan=False), FPS), min_size=1, max_size=30)
RULES = st.builds(GroupRule, name=st.just("g"), group_wait_s=st.sampled_from([0.5, 30.0, 120.0]),
                  group_interval_s=st.sampled_from([1.0, 60.0, 300.0]),
                  repeat_interval_s=st.sampled_from([60.0, 600.0, 3600.0]),
                  resolve_timeout_s=st.sampled_from([100.0, 1800.0]))


def run(arrivals: list[tuple[float, str]], rule: GroupRule, ticks: dict[int, float], end: float
        ) -> list[tuple[float, str, tuple[str, ...], str]]:
    """As the grouping agent: each alert flushes the group's due flushes before its event time,
    then joins; ``ticks[i]`` an idle timer's flush before arrival i at that clock."""
    s: GroupState | None = None
    out = []

    def take(clock: float) -> None:
        nonlocal s
        s, flushes = catch_up(s, rule, clock)
        out.extend((f.at, f.reason, tuple(m["fingerprint"] for m in f.listed), f.dedupe_key)
                   for f in flushes if f.notify)

    for i, (t, fp) in enumerate(arrivals):
        if i in ticks:
            take(ticks[i])
        take(before(T0 + t))
        s = admit(s, member(fp, T0 + t), rule, "g|k", 0).state
    take(end)
    return out


@settings(max_examples=120, deadline=None)
@given(ARRIVALS, RULES, st.data())
def test_a_replay_decides_the_same(arrivals: list[tuple[float, str]], rule: GroupRule, data: st.DataObject) -> None:
    """In event-time order, the notifications are the same whether the idle timer flushed
    between alerts (at any clock before the next alert's time) or only the alerts' own times
    did: a replay, read faster than the wall clock, decides as the live run did."""
    arrivals = sorted(arrivals)
    end = T0 + 10_000
    plain = run(arrivals, rule, {}, end)
    ticks: dict[int, float] = {}
    for i in range(1, len(arrivals)):
        lo, hi = T0 + arrivals[i - 1][0], T0 + arrivals[i][0]
        if hi > lo and data.draw(st.booleans()):
            ticks[i] = data.draw(st.floats(lo, before(hi), allow_nan=False))
    assert run(arrivals, rule, ticks, end) == plain
    assert run(arrivals, rule, {}, end) == plain  # and a second run is the same


@settings(max_examples=100, deadline=None)
@given(ARRIVALS, RULES)
def test_a_flush_lists_exactly_the_members_due(arrivals: list[tuple[float, str]], rule: GroupRule) -> None:
    """Every notification at T lists the alerts of event time <= T still inside the resolve
    timeout, each fingerprint once."""
    arrivals = sorted(arrivals)
    for at, _, listed, _ in run(arrivals, rule, {}, T0 + 10_000):
        last: dict[str, float] = {}
        for t, fp in arrivals:
            seen = float(member(fp, T0 + t)["t"])  # the event's time as the alert carries it (to the µs)
            if seen <= at:
                last[fp] = seen
        assert set(listed) == {fp for fp, t in last.items() if at - t < rule.resolve_timeout_s}
        assert len(listed) == len(set(listed))


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(["component_recovered", "order_rejected", "db_write_fail"]),
       st.sampled_from(["trigger", "resolve"]), st.sampled_from([1, 2, 3]),
       st.lists(st.builds(GroupRule, name=st.sampled_from(["a", "b"]),
                          types=st.lists(st.sampled_from(["component_recovered", "order_rejected"]),
                                         max_size=2).map(tuple),
                          severities=st.lists(st.sampled_from([1, 2, 3]), max_size=2).map(tuple)), max_size=3))
def test_a_recovery_is_never_grouped(type_: str, action: str, severity: int, rules: list[GroupRule]) -> None:
    """A recovery (of a notified alert or not) is never held for a group: the throttle's
    grouping step passes it on, and it is routed on its own as before."""
    ev = event(type_=type_, action=action, severity=severity)
    grouper = Grouper(SimpleNamespace(policy=SimpleNamespace(groups=tuple(rules)),  # type: ignore[arg-type]
                                      topics=SimpleNamespace(groups=None)))
    if ev.is_recovery:
        assert rule_for(ev, rules) is None
        assert grouper.join(ev, 0) is None
    else:
        joined = grouper.join(ev, 0)
        assert (joined is None) == (rule_for(ev, rules) is None)
