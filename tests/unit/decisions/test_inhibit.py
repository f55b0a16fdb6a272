"""Inhibition (decisions/inhibit.py): Alertmanager's inhibit_rules over event time as tables of
cases (who inhibits whom, when a target is released, which facts an event makes), the routing
file's ``[[inhibit_rules]]``, and the properties "a replay decides the same", "facts fold in
any order" and "a recovery of a notified alert is never inhibited"."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.decisions.inhibit import (
    KEEP_LATE_S,
    RELEASE_KEY,
    InhibitIndex,
    InhibitRule,
    closed_facts,
    release_event,
    step,
)
from tocsin.decisions.routing import parse_policy, problems
from tocsin.decisions.silence import labels_of, parse_matcher
from tocsin.schemas.alert import AlertEvent, create_alert
from tocsin.schemas.inhibit import InhibitionFact

T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
RULE = InhibitRule("component down mutes its order rejections", (parse_matcher('type="component_unhealthy"'),),
                   (parse_matcher('type="order_rejected"'),), ("account_id",))
#: two-sided: a SEV1 of any type mutes the SEV3s of its account, SEV1 matching both sides too
TWO_SIDED = InhibitRule("sev1 mutes sev3", (parse_matcher('severity=~"1"'),),
                        (parse_matcher('severity=~"1|3"'),), ("account_id",))


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def ev(kind: str, minutes: float, account: str = "A1", **kw: Any) -> AlertEvent:
    """``down`` (component_unhealthy), ``up`` (component_recovered), ``rej`` (order_rejected),
    ``rej_ok`` (the rejection resolved), ``down_ok`` (component_unhealthy resolved by action)."""
    types = {"down": ("component_unhealthy", 1), "up": ("component_recovered", 3), "rej": ("order_rejected", 2),
             "rej_ok": ("order_rejected", 2), "down_ok": ("component_unhealthy", 1)}
    t, sev = types[kind]
    action = "resolve" if kind.endswith("_ok") else "trigger"
    return create_alert(t, kw.pop("severity", sev), kind, event_timestamp=at(minutes), account_id=account,
                        action=action, **kw)


def run(index: InhibitIndex, events: list[AlertEvent], notified: bool = False) -> list[tuple[str | None, str | None]]:
    """The throttle's use: each event decided, its facts folded in at once; (rule, released_by) each."""
    out = []
    for e in events:
        s = step(index, e, notified_firing=notified)
        for f in s.facts:
            index.apply(f)
        out.append((s.inhibition.rule if s.inhibition else None, s.released_by))
    return out


R = RULE.name

# events in processing order -> the rule inhibiting each (None: not inhibited)
CASES = [
    ("source then target, same account", [ev("down", 0), ev("rej", 1)], [None, R]),
    ("another account", [ev("down", 0), ev("rej", 1, account="A2")], [None, None]),
    ("target before the source fired (event time)", [ev("down", 5), ev("rej", 1)], [None, None]),
    ("target at the source's own time", [ev("down", 5), ev("rej", 5)], [None, R]),
    ("source recovered before the target", [ev("down", 0), ev("up", 2), ev("rej", 3)], [None, None, None]),
    ("recovered at the target's time: the resolve wins", [ev("down", 0), ev("up", 3), ev("rej", 3)],
     [None, None, None]),
    ("recovered after the target (late recovery)", [ev("down", 0), ev("up", 9), ev("rej", 3)], [None, None, R]),
    ("resolved by action", [ev("down", 0), ev("down_ok", 2), ev("rej", 3)], [None, None, None]),
    ("fired again after its recovery", [ev("down", 0), ev("up", 2), ev("down", 4), ev("rej", 5)],
     [None, None, None, R]),
    ("a source is never its own target", [ev("down", 0), ev("down", 1)], [None, None]),
    ("a recovery of a target not notified is inhibited too", [ev("down", 0), ev("rej", 1), ev("rej_ok", 2)],
     [None, R, R]),
    ("unrelated types", [ev("down", 0), create_alert("db_write_fail", 2, "x", event_timestamp=at(1),
                                                     account_id="A1")], [None, None]),
]


@pytest.mark.parametrize(("events", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_who_is_inhibited(events: list[AlertEvent], want: list[str | None]) -> None:
    assert [r for r, _ in run(InhibitIndex([RULE]), events)] == want


def test_equal_absent_labels_read_as_empty() -> None:
    """No account on either side: equal ("" == ""), as Alertmanager compares absent labels."""
    idx = InhibitIndex([RULE])
    assert run(idx, [ev("down", 0, account=None), ev("rej", 1, account=None)]) == [(None, None), (R, None)]


def test_equal_with_own_labels() -> None:
    """``equal`` reads the alert's own labels (details.labels) as well as its fields."""
    rule = InhibitRule("by cluster", (parse_matcher('type="component_unhealthy"'),),
                       (parse_matcher('type="order_rejected"'),), ("cluster",))
    lab = {"labels": {"cluster": "eu"}}
    got = run(InhibitIndex([rule]), [ev("down", 0, details=lab), ev("rej", 1, account="A9", details=lab),
                                     ev("rej", 2, details={"labels": {"cluster": "us"}})])
    assert got == [(None, None), ("by cluster", None), (None, None)]


TWO_SIDED_CASES = [
    # a SEV1 and a SEV3 of one account: the SEV3 is inhibited
    ("sev1 mutes sev3", [ev("down", 0), ev("rej", 1, severity=3)], [None, "sev1 mutes sev3"]),
    # two SEV1s match both sides: neither inhibits the other (Alertmanager's two-sided match)
    ("two-sided sources do not inhibit each other", [ev("down", 0), ev("rej", 1, severity=1)], [None, None]),
]


@pytest.mark.parametrize(("events", "want"), [c[1:] for c in TWO_SIDED_CASES], ids=[c[0] for c in TWO_SIDED_CASES])
def test_two_sided_rule(events: list[AlertEvent], want: list[str | None]) -> None:
    assert [r for r, _ in run(InhibitIndex([TWO_SIDED]), events)] == want


def test_first_rule_in_file_order_is_named() -> None:
    other = InhibitRule("any account", RULE.source_matchers, RULE.target_matchers, ())
    assert run(InhibitIndex([other, RULE]), [ev("down", 0), ev("rej", 1)])[1] == ("any account", None)


def test_silenced_source_still_inhibits_and_muted_event_is_not_inhibited() -> None:
    idx = InhibitIndex([RULE])
    s = step(idx, ev("down", 0), muted=True)
    assert s.inhibition is None and [f.kind for f in s.facts] == ["source"]
    for f in s.facts:
        idx.apply(f)
    assert step(idx, ev("rej", 1)).inhibition is not None
    assert step(idx, ev("rej", 1), muted=True).inhibition is None


def test_recovery_of_notified_target_is_not_inhibited() -> None:
    idx = InhibitIndex([RULE])
    run(idx, [ev("down", 0)])
    assert step(idx, ev("rej_ok", 2), notified_firing=True).inhibition is None
    asked: list[bool] = []
    assert step(idx, ev("rej", 2), notified_firing=lambda: asked.append(True) or True).inhibition is not None
    assert not asked  # only asked of a recovery


# ------------------------------------------------------------------ facts

FACT_CASES = [
    # events before, the event -> the (kind, fingerprint-type, firing) of its facts
    ("a source's first firing", [], ev("down", 0), [("source", "component_unhealthy", True)]),
    ("firing again restarts its timeout", [ev("down", 0)], ev("down", 1), [("source", "component_unhealthy", True)]),
    ("the same firing read again makes nothing", [ev("down", 0)], ev("down", 0), []),
    ("recovery resolves the source it names", [ev("down", 0)], ev("up", 2), [("source", "component_unhealthy", False)]),
    ("recovery of an unknown source makes nothing", [], ev("up", 2), []),
    ("an inhibited target", [ev("down", 0)], ev("rej", 1), [("target", "order_rejected", True)]),
    ("its recovery ends it", [ev("down", 0), ev("rej", 1)], ev("rej_ok", 2), [("target", "order_rejected", False)]),
    ("no rule matching: nothing", [], ev("rej", 1), []),
]


@pytest.mark.parametrize(("before", "event", "want"), [c[1:] for c in FACT_CASES], ids=[c[0] for c in FACT_CASES])
def test_facts(before: list[AlertEvent], event: AlertEvent, want: list[tuple[str, str, bool]]) -> None:
    idx = InhibitIndex([RULE])
    run(idx, before)
    got = step(idx, event).facts
    assert [(f.kind, f.fingerprint.split(":")[0], f.firing) for f in got] == want
    assert all(f.at == event.event_timestamp and f.made_by == str(event.alert_id) for f in got)


# ------------------------------------------------------------------ release

RELEASE_CASES = [
    # events -> when the target (order_rejected of A1) is released, in minutes (None: not)
    ("source resolves", [ev("down", 0), ev("rej", 1), ev("up", 5)], 5),
    ("still firing: released when it times out (a day)", [ev("down", 0), ev("rej", 1)], 1440),
    ("target resolved first", [ev("down", 0), ev("rej", 1), ev("rej_ok", 2), ev("up", 5)], None),
    ("two sources: one resolving is not enough",
     [ev("down", 0), ev("down", 0, fingerprint="component_unhealthy:db"), ev("rej", 1), ev("up", 5)], 1440),
    ("resolve arrives before the target's record (late target)", [ev("down", 0), ev("up", 5), ev("rej", 1)], 5),
]


@pytest.mark.parametrize(("events", "want"), [c[1:] for c in RELEASE_CASES], ids=[c[0] for c in RELEASE_CASES])
def test_release_at(events: list[AlertEvent], want: float | None) -> None:
    idx = InhibitIndex([RULE])
    run(idx, events)
    got = idx.release_at("order_rejected:A1::")
    assert (None if got is None else (got - T0.timestamp()) / 60) == want


def test_release_with_two_sources_waits_for_both() -> None:
    idx = InhibitIndex([RULE])
    db = dict(fingerprint="component_unhealthy:db")
    run(idx, [ev("down", 0), ev("down", 0, **db), ev("rej", 1),
              ev("down_ok", 5, fingerprint="component_unhealthy:db")])
    assert idx.release_at("order_rejected:A1::") == at(1440).timestamp()  # the entity one fires till it times out
    run(idx, [ev("up", 7)])
    assert idx.release_at("order_rejected:A1::") == at(7).timestamp()


def test_release_event_is_decided_released_and_ends_the_target() -> None:
    idx = InhibitIndex([RULE])
    run(idx, [ev("down", 0), ev("rej", 1), ev("up", 5)])
    (fp, target), = idx.pending()
    released = release_event(target.alert, idx.release_at(fp), target.rule)  # type: ignore[arg-type]
    again = release_event(target.alert, idx.release_at(fp), target.rule)  # type: ignore[arg-type]
    assert released.alert_id == again.alert_id != target.alert.alert_id  # type: ignore[union-attr]
    assert released.event_timestamp == at(5) and released.details[RELEASE_KEY]["rule"] == R
    s = step(idx, released)
    assert s.inhibition is None and s.released_by == R
    assert [(f.kind, f.firing) for f in s.facts] == [("target", False)]
    for f in s.facts:
        idx.apply(f)
    assert list(idx.pending()) == []


# ------------------------------------------------------------------ routing file

DOC = {"inhibit_rules": [{"name": R, "source_matchers": ['type="component_unhealthy"'],
                          "target_matchers": ['type="order_rejected"'], "equal": ["account_id"]}]}

ROUTING_CASES = [
    ({"inhibit_rules": [{**DOC["inhibit_rules"][0], "source_matchers": []}]},  # type: ignore[dict-item]
     "inhibit_rules[0].source_matchers: at least one matcher"),
    ({"inhibit_rules": [{**DOC["inhibit_rules"][0], "target_matchers": ['type=~"(']}]},  # type: ignore[dict-item]
     "inhibit_rules[0].target_matchers[0]: invalid regular expression"),
    ({"inhibit_rules": [{**DOC["inhibit_rules"][0], "equal": "account_id"}]},  # type: ignore[dict-item]
     "inhibit_rules[0].equal: "),
    ({"inhibit_rules": [{**DOC["inhibit_rules"][0], "nme": "x"}]},  # type: ignore[dict-item]
     "inhibit_rules[0].nme: unknown key"),
    ({"inhibit_rules": [DOC["inhibit_rules"][0], DOC["inhibit_rules"][0]]},
     "inhibit_rules[1].name: another rule is named"),
    ({"inhibit_rules": {"name": "x"}}, "inhibit_rules: expected a list of tables"),
]


def test_routing_file_rules() -> None:
    policy = parse_policy(DOC)
    assert policy.inhibit_rules == (RULE,)
    assert parse_policy({}).inhibit_rules == ()


@pytest.mark.parametrize(("doc", "want"), ROUTING_CASES)
def test_routing_file_errors(doc: dict[str, Any], want: str) -> None:
    got = problems(doc)
    assert got and got[0][1].startswith(want), got


# ------------------------------------------------------------------ properties

KINDS = ["down", "up", "rej", "rej_ok", "down_ok"]
events_st = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 30), st.sampled_from(["A1", "A2"])),
                     max_size=25).map(lambda xs: [ev(k, m, a) for k, m, a in xs])


def facts_of(events: list[AlertEvent]) -> list[InhibitionFact]:
    idx, out = InhibitIndex([RULE, TWO_SIDED]), []
    for e in events:
        s = step(idx, e)
        for f in s.facts:
            idx.apply(f)
            out.append(f)
    return out


def state(idx: InhibitIndex) -> Any:
    return ({fp: (s.labels, s.changes) for fp, s in idx.sources.items()},
            {fp: (t.at, t.firing) for fp, t in idx.targets.items() if t.firing},
            {fp: idx.release_at(fp) for fp, _ in idx.pending()})


@settings(max_examples=150, deadline=None)
@given(events_st)
def test_replay_decides_the_same(events: list[AlertEvent]) -> None:
    """The same events, from a fresh index (a topic replayed from its start), decide the same
    and make the same facts."""
    assert run(InhibitIndex([RULE, TWO_SIDED]), events) == run(InhibitIndex([RULE, TWO_SIDED]), events)
    assert facts_of(events) == facts_of(events)


@settings(max_examples=150, deadline=None)
@given(events_st, st.randoms(use_true_random=False))
def test_facts_fold_in_any_order(events: list[AlertEvent], rnd: random.Random) -> None:
    """A worker reading the facts in another order (other partitions first), or twice, holds
    the same state: the same sources, pending targets and release times."""
    facts = facts_of(events)
    a, b = InhibitIndex([RULE, TWO_SIDED]), InhibitIndex([RULE, TWO_SIDED])
    for f in facts:
        a.apply(f)
    shuffled = facts * 2
    rnd.shuffle(shuffled)
    for f in shuffled:
        b.apply(f)
    assert state(a) == state(b)


@settings(max_examples=150, deadline=None)
@given(events_st)
def test_replay_in_event_time_with_the_facts_kept_decides_the_same(events: list[AlertEvent]) -> None:
    """Events in event-time order decided once, then again against every fact of that run (a
    replay of P.alerts with P.inhibitions kept): the same inhibitions (a decision at ``t`` reads
    only what happened at or before ``t``; at the same time, as the decision reads them: a source's
    firing first, then the sources' resolves, which win over it, then the rest)."""
    def order(e: AlertEvent) -> tuple[float, int]:
        source = e.type.startswith("component_")
        return e.epoch, 0 if source and not e.is_recovery else 1 if source else 2

    ordered = sorted(events, key=order)
    first = run(InhibitIndex([RULE]), ordered)
    idx = InhibitIndex([RULE])
    for f in facts_of_rules(ordered, [RULE]):
        idx.apply(f)
    assert [r for r, _ in run(idx, ordered)] == [r for r, _ in first]


def facts_of_rules(events: list[AlertEvent], rules: list[InhibitRule]) -> list[InhibitionFact]:
    idx, out = InhibitIndex(rules), []
    for e in events:
        for f in step(idx, e).facts:
            idx.apply(f)
            out.append(f)
    return out


@settings(max_examples=150, deadline=None)
@given(events_st, st.sampled_from(["up", "rej_ok", "down_ok"]), st.integers(0, 30))
def test_recovery_of_a_notified_alert_is_never_inhibited(events: list[AlertEvent], kind: str, minute: int) -> None:
    idx = InhibitIndex([RULE, TWO_SIDED])
    run(idx, events)
    assert step(idx, ev(kind, minute), notified_firing=True).inhibition is None


def test_own_labels_may_rename_the_type() -> None:
    """An Alertmanager alert keeps its labels: an ``alertname`` label is what the matchers see."""
    rule = InhibitRule("by alertname", (parse_matcher('alertname="NodeDown"'),),
                       (parse_matcher('alertname="OrderRejected"'),), ("account_id",))
    got = run(InhibitIndex([rule]), [
        create_alert("am_alert", 1, "x", event_timestamp=at(0), account_id="A1", fingerprint="am:1",
                     details={"labels": {"alertname": "NodeDown"}}),
        create_alert("am_alert", 1, "y", event_timestamp=at(1), account_id="A1", fingerprint="am:2",
                     details={"labels": {"alertname": "OrderRejected"}})])
    assert got == [(None, None), ("by alertname", None)]


# ------------------------------------------------------------------ source timeout, on-call resolves, forgetting

SHORT = InhibitRule("short", RULE.source_matchers, RULE.target_matchers, ("account_id",), source_timeout_s=600)
S = SHORT.name

TIMEOUT_CASES = [
    # events (rule: the source stops inhibiting 10 minutes after its last firing) -> the rule inhibiting each
    ("within the timeout", [ev("down", 0), ev("rej", 9)], [None, S]),
    ("at the timeout: no longer", [ev("down", 0), ev("rej", 10)], [None, None]),
    ("a firing again restarts it", [ev("down", 0), ev("down", 8), ev("rej", 15)], [None, None, S]),
    ("a late firing again restarts it too", [ev("down", 8), ev("down", 0), ev("rej", 15)], [None, None, S]),
    ("an older firing does not", [ev("down", 0), ev("rej", 12)], [None, None]),
    ("fired again after timing out", [ev("down", 0), ev("rej", 12), ev("down", 20), ev("rej", 21)],
     [None, None, None, S]),
]


@pytest.mark.parametrize(("events", "want"), [c[1:] for c in TIMEOUT_CASES], ids=[c[0] for c in TIMEOUT_CASES])
def test_source_timeout(events: list[AlertEvent], want: list[str | None]) -> None:
    assert [r for r, _ in run(InhibitIndex([SHORT]), events)] == want


TIMEOUT_RELEASE_CASES = [
    ("released when its source times out", [ev("down", 0), ev("rej", 1)], 10),
    ("a firing again puts it off", [ev("down", 0), ev("rej", 1), ev("down", 6)], 16),
    ("a resolve before the timeout releases then", [ev("down", 0), ev("rej", 1), ev("up", 4)], 4),
]


@pytest.mark.parametrize(("events", "want"), [c[1:] for c in TIMEOUT_RELEASE_CASES],
                         ids=[c[0] for c in TIMEOUT_RELEASE_CASES])
def test_release_on_timeout(events: list[AlertEvent], want: float) -> None:
    idx = InhibitIndex([SHORT])
    run(idx, events)
    assert idx.release_at("order_rejected:A1::") == at(want).timestamp()


def closed(idx: InhibitIndex, fp: str, minutes: float) -> None:
    for f in closed_facts(fp, at(minutes), "oncall"):
        idx.apply(f)


CLOSED_CASES = [
    # an on-call resolves (or dismisses) the source at minute 3 -> the target at minute 4
    ("resolved by an on-call: no longer inhibits", [ev("down", 0)], 3, [ev("rej", 4)], [None]),
    ("a target before the resolve still was", [ev("down", 0)], 3, [ev("rej", 2)], [R]),
    ("fired again after the resolve", [ev("down", 0)], 3, [ev("down", 5), ev("rej", 6)], [None, R]),
    ("the resolve read before the firing (any order)", [], 3, [ev("down", 0), ev("rej", 4)], [None, None]),
]


@pytest.mark.parametrize(("before", "when", "after", "want"), [c[1:] for c in CLOSED_CASES],
                         ids=[c[0] for c in CLOSED_CASES])
def test_on_call_resolve_of_a_source(before: list[AlertEvent], when: float, after: list[AlertEvent],
                                     want: list[str | None]) -> None:
    idx = InhibitIndex([RULE])
    run(idx, before)
    closed(idx, "component_unhealthy:A1::", when)
    assert [r for r, _ in run(idx, after)] == want


def test_on_call_resolve_releases_the_held_target_and_ends_a_resolved_one() -> None:
    idx = InhibitIndex([RULE])
    run(idx, [ev("down", 0), ev("rej", 1)])
    closed(idx, "component_unhealthy:A1::", 3)
    assert idx.release_at("order_rejected:A1::") == at(3).timestamp()
    closed(idx, "order_rejected:A1::", 4)  # the held target itself resolved by the on-call: not released
    assert idx.release_at("order_rejected:A1::") is None and not list(idx.pending())


def test_forget_drops_what_can_change_nothing() -> None:
    idx = InhibitIndex([SHORT])
    run(idx, [ev("down", 0), ev("up", 1), ev("down", 0, account="A2"), ev("rej", 1, account="A2"),
              ev("rej_ok", 2, account="A2")])
    day = KEEP_LATE_S / 60
    run(idx, [ev("down", day + 13, account="A3")])  # the watermark moves on
    assert idx.forget() > 0
    assert set(idx.sources) == {"component_unhealthy:A3::"} and not list(idx.pending())
    late = run(idx, [ev("down", 1)])  # older than the cut: ignored
    assert late == [(None, None)] and set(idx.sources) == {"component_unhealthy:A3::"}


def test_forget_keeps_an_ended_target_so_its_firing_read_late_holds_nothing() -> None:
    """A held target that ended long ago: its firing fact read again after a forget (the
    throttle's own fact read back, a fact read twice) must not hold it again (it would be
    released, notified, although it resolved)."""
    idx = InhibitIndex([SHORT])
    before = facts_of_rules([ev("down", 0), ev("rej", 1), ev("rej_ok", 2)], [SHORT])
    for f in before:
        idx.apply(f)
    run(idx, [ev("down", KEEP_LATE_S / 60 + 60, account="A3")])  # the watermark moves on
    idx.forget()
    held = next(f for f in before if f.kind == "target" and f.firing)
    assert not idx.apply(held) and not list(idx.pending())


queries_st = st.lists(st.tuples(st.sampled_from(["A1", "A2"]), st.integers(0, 40)), min_size=1, max_size=10)
far_events_st = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 40), st.sampled_from(["A1", "A2"])),
                         max_size=25).map(lambda xs: [ev(k, m * 5, a) for k, m, a in xs])


@settings(max_examples=150, deadline=None)
@given(far_events_st, st.randoms(use_true_random=False), queries_st)
def test_forgetting_changes_no_decision(events: list[AlertEvent], rnd: random.Random,
                                        queries: list[tuple[str, int]]) -> None:
    """Facts folded in any order with ``forget`` at any point decide as the same facts never
    forgotten, for every event at most KEEP_LATE_S older than the newest fact: who is inhibited,
    which targets are pending, when they are released (short timeouts and a small KEEP_LATE_S
    so that forgetting happens)."""
    import tocsin.decisions.inhibit as inhibit

    keep = inhibit.KEEP_LATE_S
    inhibit.KEEP_LATE_S = 30 * 60
    try:
        rules = [SHORT, dataclasses.replace(TWO_SIDED, source_timeout_s=1200)]
        facts = facts_of_rules(events, rules)
        whole, forgetful = InhibitIndex(rules), InhibitIndex(rules)
        for f in facts:
            whole.apply(f)
        shuffled = facts * 2
        rnd.shuffle(shuffled)
        for f in shuffled:
            forgetful.apply(f)
            if rnd.random() < 0.3:
                forgetful.forget()
        forgetful.forget()
        floor = whole.watermark - inhibit.KEEP_LATE_S
        for account, m in queries:
            t = max(floor, T0.timestamp()) + m * 60
            for e in (ev("rej", 0, account), ev("down", 0, account, severity=1)):
                labels = labels_of(e)
                assert whole.inhibited(labels, e.fingerprint, t) == forgetful.inhibited(labels, e.fingerprint, t)
        assert state_pending(whole) == state_pending(forgetful)
    finally:
        inhibit.KEEP_LATE_S = keep


def state_pending(idx: InhibitIndex) -> Any:
    return {fp: (t.at, idx.release_at(fp)) for fp, t in idx.pending()}


@settings(max_examples=100, deadline=None)
@given(far_events_st, st.sampled_from(["up", "rej_ok", "down_ok"]), st.integers(0, 200))
def test_recovery_of_a_notified_alert_is_never_inhibited_with_timeouts(events: list[AlertEvent], kind: str,
                                                                       minute: int) -> None:
    idx = InhibitIndex([SHORT])
    run(idx, events)
    idx.forget()
    assert step(idx, ev(kind, minute), notified_firing=True).inhibition is None


def test_routing_file_source_timeout() -> None:
    base = {"name": "r", "source_matchers": ['type="a"'], "target_matchers": ['type="b"']}
    assert parse_policy({"inhibit_rules": [base]}).inhibit_rules[0].source_timeout_s == 86_400
    assert parse_policy({"inhibit_rules": [{**base, "source_timeout_s": 3600}]}).inhibit_rules[0].source_timeout_s == 3600
    assert problems({"inhibit_rules": [{**base, "source_timeout_s": 0}]})
