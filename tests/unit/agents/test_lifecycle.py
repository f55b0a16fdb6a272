"""The lifecycle fold: decisions and on-call actions into a fingerprint's status."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tocsin.agents.lifecycle import fold, recovery_resolve
from tocsin.schemas import Decision, LifecycleAction, LifecycleEvent, Outcome, create_alert

T0 = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)


def decision(outcome: Outcome = Outcome.NOTIFY, at: dt.datetime = T0, fp: str = "db:1", type_: str = "db_write_fail",
             **kw) -> Decision:
    a = create_alert(type_, kw.pop("severity", 2), kw.pop("summary", "db down"), fingerprint=fp,
                     event_timestamp=at, **kw)
    return Decision(decision_id=uuid.uuid4(), alert=a, dedupe_key=f"{fp}:0", outcome=outcome, reason="r",
                    window_start=at)


def action(act: LifecycleAction, at: dt.datetime, fp: str = "db:1", by: str = "ann") -> LifecycleEvent:
    return LifecycleEvent(fingerprint=fp, action=act, by=by, note="n", at=at)


def test_first_decision_makes_an_active_status() -> None:
    s = fold(None, decision(requires_action=True, symbol="BTC"))
    assert s["status"] == "active" and s["occurrences"] == 1 and s["suppressed_count"] == 0
    assert s["requires_action"] is True and s["entity"] == {"symbol": "BTC"}
    assert s["first_seen"] == s["last_seen"] == "2026-11-22T10:00:00Z"


def test_suppressed_occurrences_are_counted_and_last_seen_moves() -> None:
    s = fold(None, decision())
    for i in range(1, 4):
        s = fold(s, decision(Outcome.SUPPRESS, T0 + dt.timedelta(seconds=i), summary=f"again {i}"))
    assert s["occurrences"] == 4 and s["suppressed_count"] == 3
    assert s["last_seen"] == "2026-11-22T10:00:03Z" and s["summary"] == "again 3"


@pytest.mark.parametrize(("outcomes", "outcome", "reason"), [
    ([(Outcome.NOTIFY, 0, "first in window")], "notify", "first in window"),
    ([(Outcome.NOTIFY, 0, "first in window"), (Outcome.SUPPRESS, 5, "duplicate in window")],
     "suppress", "duplicate in window"),
    # a late alert (older than the latest) changes the counts, not the latest decision
    ([(Outcome.SUPPRESS, 5, "duplicate in window"), (Outcome.NOTIFY, 0, "first in window")],
     "suppress", "duplicate in window"),
    ([(Outcome.NOTIFY, 0, "first in window"), (Outcome.SILENCED, 9, "silence-1")], "silenced", "silence-1"),
    ([(Outcome.NOTIFY, 0, "x" * 300)], "notify", "x" * 200),
])
def test_the_status_keeps_why_its_latest_alert_was_or_was_not_notified(
        outcomes: list[tuple[Outcome, int, str]], outcome: str, reason: str) -> None:
    s = None
    for o, secs, why in outcomes:
        d = decision(o, T0 + dt.timedelta(seconds=secs))
        s = fold(s, d.model_copy(update={"reason": why}))
    assert s is not None and (s["outcome"], s["reason"]) == (outcome, reason)
    assert fold(s, action(LifecycleAction.ACKNOWLEDGE, T0 + dt.timedelta(hours=1)))["outcome"] == outcome


@pytest.mark.parametrize(("act", "status"), [(LifecycleAction.ACKNOWLEDGE, "acknowledged"),
                                             (LifecycleAction.RESOLVE, "resolved"),
                                             (LifecycleAction.DISMISS, "dismissed")])
def test_actions_set_the_status(act: LifecycleAction, status: str) -> None:
    s = fold(fold(None, decision()), action(act, T0 + dt.timedelta(minutes=1)))
    assert s["status"] == status
    if act is LifecycleAction.ACKNOWLEDGE:
        assert s["acknowledged_by"] == "ann"


@pytest.mark.parametrize("closing", [LifecycleAction.RESOLVE, LifecycleAction.DISMISS])
def test_a_closed_fingerprint_that_fires_again_is_active_again(closing: LifecycleAction) -> None:
    s = fold(fold(None, decision()), action(closing, T0 + dt.timedelta(minutes=1)))
    s = fold(s, decision(at=T0 + dt.timedelta(minutes=2)))
    assert s["status"] == "active" and s["occurrences"] == 2


def test_a_late_event_from_before_the_resolve_does_not_reopen() -> None:
    s = fold(fold(None, decision()), action(LifecycleAction.RESOLVE, T0 + dt.timedelta(minutes=5)))
    s = fold(s, decision(Outcome.SUPPRESS, at=T0 + dt.timedelta(minutes=1)))
    assert s["status"] == "resolved"


def test_acknowledged_stays_acknowledged_when_it_fires_again() -> None:
    s = fold(fold(None, decision()), action(LifecycleAction.ACKNOWLEDGE, T0 + dt.timedelta(minutes=1)))
    s = fold(s, decision(Outcome.SUPPRESS, at=T0 + dt.timedelta(minutes=2)))
    assert s["status"] == "acknowledged"


def test_a_recovery_resolves_its_target_and_itself() -> None:
    rec = decision(Outcome.BYPASS, T0 + dt.timedelta(minutes=3), fp="component_recovered:redis",
                   type_="component_recovered")
    implied = recovery_resolve(rec)
    assert implied is not None and implied.fingerprint == "component_unhealthy:redis"
    assert implied.action is LifecycleAction.RESOLVE and implied.by == "tocsin:recovery"
    assert recovery_resolve(rec) == implied  # deterministic: a re-read recovery resolves once
    problem = fold(None, decision(fp="component_unhealthy:redis", type_="component_unhealthy"))
    assert fold(problem, implied)["status"] == "resolved"
    assert fold(None, rec)["status"] == "resolved"


def test_non_recoveries_imply_nothing() -> None:
    assert recovery_resolve(decision()) is None
    assert recovery_resolve(decision(Outcome.SUPPRESS)) is None


events = st.lists(st.tuples(st.sampled_from(["notify", "suppress", "ack", "resolve", "dismiss"]),
                            st.integers(0, 3600)), max_size=30)


@given(events)
def test_fold_invariants(seq: list[tuple[str, int]]) -> None:
    s = None
    n_decisions = n_suppressed = 0
    for kind, secs in seq:
        at = T0 + dt.timedelta(seconds=secs)
        if kind in ("notify", "suppress"):
            s = fold(s, decision(Outcome(kind), at))
            n_decisions += 1
            n_suppressed += kind == "suppress"
        else:
            act = {"ack": LifecycleAction.ACKNOWLEDGE, "resolve": LifecycleAction.RESOLVE,
                   "dismiss": LifecycleAction.DISMISS}[kind]
            s = fold(s, action(act, at))
        assert s["status"] in ("active", "acknowledged", "resolved", "dismissed")
    if s is not None:
        assert s["occurrences"] == n_decisions and s["suppressed_count"] == n_suppressed
        if n_decisions:
            assert s["first_seen"] <= s["last_seen"]


@given(events, st.integers(0, 3))
def test_the_sweep_forgets_what_the_fold_closed_once_its_retention_passed(seq: list[tuple[str, int]],
                                                                          days: int) -> None:
    """A fold's status, in the table's index, is swept exactly when ``status_expiry`` says:
    never while open, a day after it was closed (the later of the close and its last time)."""
    from tocsin.agents.lifecycle import expired_statuses
    from tocsin.core.status_index import StatusIndex
    from tocsin.decisions.retention import status_expiry

    s = None
    for kind, secs in seq:
        at = T0 + dt.timedelta(seconds=secs)
        if kind in ("notify", "suppress"):
            s = fold(s, decision(Outcome(kind), at))
        else:
            act = {"ack": LifecycleAction.ACKNOWLEDGE, "resolve": LifecycleAction.RESOLVE,
                   "dismiss": LifecycleAction.DISMISS}[kind]
            s = fold(s, action(act, at))
    if s is None:
        return
    index = StatusIndex()
    index.put("db:1", s, 2)
    index.apply()
    now = T0 + dt.timedelta(days=days, hours=1)
    swept = expired_statuses(index, now, 86400, owned={2})
    expected = s["status"] in ("resolved", "dismissed") and days >= 1
    assert status_expiry(s, now, 86400).expired is expected
    assert swept == ([("db:1", 2)] if expected else []) and ("db:1" in index) is not expected
