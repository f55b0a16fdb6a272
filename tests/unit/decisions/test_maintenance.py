"""Maintenance windows (decisions/maintenance.py): recurring rules of the routing file and
one-off windows, as a table of cases; the throttle's ``muted`` verdict; the routing file's
``[[time_intervals]]`` and ``[[maintenance]]`` tables; and the properties "a replay decides the
same" and "a recovery of a notified alert is never muted"."""

from __future__ import annotations

import datetime as dt
import tomllib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.decisions import maintenance as maint
from tocsin.decisions.maintenance import MaintenancePolicy, MaintenanceRule, muted_by, muted_verdict
from tocsin.decisions.routing import parse_policy, problems
from tocsin.decisions.silence import SilenceIndex, parse_matcher
from tocsin.decisions.throttle import WindowState, decide
from tocsin.decisions.timeinterval import TimeInterval
from tocsin.schemas.alert import AlertEvent, create_alert
from tocsin.schemas.maintenance import MaintenanceWindow
from tocsin.schemas.messages import Outcome
from tocsin.web.maintenance import BadSilence, gettable, postable, query

#: a Saturday, 02:00 in Berlin (summer time: 00:00 UTC)
SAT = dt.datetime(2026, 5, 2, 0, 0, tzinfo=dt.UTC)

WEEKEND_NIGHTS = TimeInterval(times=((120, 360),), weekdays=((6, 6), (0, 0)), location="Europe/Berlin")
OFFICE_HOURS = TimeInterval(times=((540, 1020),), weekdays=((1, 5),), location="Europe/Berlin")
INTERVALS = {"weekend-nights": (WEEKEND_NIGHTS,), "office-hours": (OFFICE_HOURS,)}


def at(minutes: float) -> dt.datetime:
    return SAT + dt.timedelta(minutes=minutes)


def rule(*matchers: str, intervals: tuple[str, ...] = ("weekend-nights",), name: str = "") -> MaintenanceRule:
    return MaintenanceRule(intervals, tuple(parse_matcher(m) for m in matchers), name)


def policy(*rules: MaintenanceRule) -> MaintenancePolicy:
    return MaintenancePolicy(INTERVALS, rules)


def window(*matchers: str, start: float = 0, end: float = 60, updated: float | None = None, wid: str = "w1",
           name: str = "db upgrade") -> MaintenanceWindow:
    return MaintenanceWindow(id=wid, name=name, matchers=tuple(parse_matcher(m) for m in matchers),
                             starts_at=at(start), ends_at=at(end), updated_at=at(start if updated is None else updated))


def alert(minutes: float = 10, **kw: Any) -> AlertEvent:
    base: dict[str, Any] = {"type": "db_write_fail", "severity": 1, "summary": "writes fail", "account_id": "A1",
                            "details": {"labels": {"service": "orders"}}, "event_timestamp": at(minutes)}
    base.update(kw)
    return create_alert(**base)


def recovery(minutes: float = 10, **kw: Any) -> AlertEvent:
    return alert(minutes, action="resolve", **kw)


def windows(*ws: MaintenanceWindow) -> tuple[SilenceIndex, dict[str, list[MaintenanceWindow]]]:
    versions: dict[str, list[MaintenanceWindow]] = {}
    for w in ws:
        versions.setdefault(w.id, []).append(w)
    return SilenceIndex(versions), versions


# (policy, one-off windows, alert, notified firing, expected reason)
CASES = [
    pytest.param(policy(), (), alert(), False, None, id="nothing configured"),
    pytest.param(policy(rule('service="orders"')), (), alert(), False, "interval:weekend-nights",
                 id="rule: matchers match, in its interval"),
    pytest.param(policy(rule('service="orders"', name="orders-weekend")), (), alert(), False,
                 "interval:weekend-nights rule orders-weekend", id="a named rule says its name"),
    pytest.param(policy(rule()), (), alert(), False, "interval:weekend-nights", id="rule without matchers: every alert"),
    pytest.param(policy(rule('service="payments"')), (), alert(), False, None, id="rule: matchers do not match"),
    pytest.param(policy(rule('service="orders"')), (), alert(4 * 60), False, None,
                 id="rule: after its interval (06:00 Berlin, end exclusive)"),
    pytest.param(policy(rule('service="orders"')), (), alert(4 * 60 - 1), False, "interval:weekend-nights",
                 id="rule: the interval's last minute"),
    pytest.param(policy(rule('service="orders"')), (), alert(-1), False, None,
                 id="rule: before its interval (01:59 Berlin)"),
    pytest.param(policy(rule('service="orders"', intervals=("office-hours", "weekend-nights"))), (), alert(), False,
                 "interval:weekend-nights", id="rule with two intervals: the one holding named"),
    pytest.param(policy(rule('service="orders"', intervals=("office-hours",))), (), alert(), False, None,
                 id="rule: office hours on a Saturday night"),
    pytest.param(policy(rule('severity="2"'), rule('severity="1"', name="sev1")), (), alert(), False,
                 "interval:weekend-nights rule sev1", id="the first rule that mutes is named"),
    pytest.param(policy(rule('service="orders"')), (), recovery(), True, None,
                 id="rule: a recovery of a notified alert is notified"),
    pytest.param(policy(rule('service="orders"')), (), recovery(), False, "interval:weekend-nights",
                 id="rule: a recovery of an alert never notified is muted"),
    pytest.param(policy(), (window('service="orders"'),), alert(), False, "window:w1 db upgrade",
                 id="one-off window: in it"),
    pytest.param(policy(), (window('service="orders"', name=""),), alert(), False, "window:w1",
                 id="one-off window without a name"),
    pytest.param(policy(), (window('service="orders"'),), alert(60), False, None, id="one-off window: its end exclusive"),
    pytest.param(policy(), (window('service="orders"', start=5),), alert(4), False, None,
                 id="one-off window: before its start"),
    pytest.param(policy(), (window('service="orders"', start=0, updated=20),), alert(10), False, None,
                 id="one-off window set after the event's time: not applied (a replay decides the same)"),
    pytest.param(policy(), (window('service="orders"'),), recovery(), True, None,
                 id="one-off window: a recovery of a notified alert is notified"),
    pytest.param(policy(), (window('service="orders"'),), recovery(), False, "window:w1 db upgrade",
                 id="one-off window: a recovery of an alert muted by it is muted"),
    pytest.param(policy(), (window('service="payments"'),), alert(), False, None,
                 id="one-off window: matchers do not match"),
    pytest.param(policy(rule('service="orders"')), (window('service="orders"'),), alert(), False,
                 "interval:weekend-nights", id="both: the routing file's rule first"),
    pytest.param(policy(), (window('service="orders"', wid="w2", name="b"), window('type="db_write_fail"', name="a")),
                 alert(), False, "window:w1 a", id="two windows: the smallest id named"),
    pytest.param(policy(), (window('service="orders"', end=30), window('service="orders"', end=5, updated=3)),
                 alert(10), False, None, id="a window ended early by a later version"),
]


@pytest.mark.parametrize(("pol", "ws", "event", "notified", "expected"), CASES)
def test_muted_by(pol: MaintenancePolicy, ws: tuple[MaintenanceWindow, ...], event: AlertEvent, notified: bool,
                  expected: str | None) -> None:
    index, versions = windows(*ws)
    assert muted_by(pol, event, event.event_timestamp, notified, index, versions) == expected
    # asked lazily: only for a recovery something holds
    asked: list[bool] = []
    muted_by(pol, event, event.event_timestamp, lambda: asked.append(True) or notified, index, versions)
    assert not asked or event.is_recovery


@pytest.mark.parametrize(("state", "event", "expected_key", "count"), [
    (None, alert(), None, 0),
    (WindowState(7, 3), alert(), None, 3),
    (None, recovery(), "recovery", 0),
])
def test_muted_verdict(state: WindowState | None, event: AlertEvent, expected_key: str | None, count: int) -> None:
    """``muted``, with the reason, the window untouched (the first alert after the window is
    notified), nothing sent: as a silence's verdict but the outcome."""
    v = muted_verdict(state, event, 600, "window:w1 db upgrade")
    assert (v.outcome, v.reason, v.new_state, v.notifies, v.suppressed_count) == (
        Outcome.MUTED, "window:w1 db upgrade", None, False, count)
    silenced = decide(state, event, 600, silenced_by="x")
    assert (v.dedupe_key, v.bucket, v.window_start) == (silenced.dedupe_key, silenced.bucket, silenced.window_start)
    if expected_key == "recovery":
        assert v.dedupe_key.endswith(str(event.alert_id))


# ------------------------------------------------------------------ the routing file

ROUTING = """
[[time_intervals]]
name = "weekend-nights"
[[time_intervals.time_intervals]]
weekdays = ["saturday", "sunday"]
times = [{start_time = "02:00", end_time = "06:00"}]
location = "Europe/Berlin"

[[time_intervals]]
name = "quarter-end"
[[time_intervals.time_intervals]]
months = ["march", "june", "september", "december"]
days_of_month = ["-2:-1"]
years = ["2026:2027"]

[[maintenance]]
name = "orders-weekend"
time_intervals = ["weekend-nights", "quarter-end"]
matchers = ['service="orders"', 'severity=~"1|2"']
"""


def test_routing_file_example() -> None:
    p = parse_policy(tomllib.loads(ROUTING)).maintenance
    assert set(p.intervals) == {"weekend-nights", "quarter-end"}
    assert p.intervals["weekend-nights"] == (WEEKEND_NIGHTS,)
    assert p.rules == (rule('service="orders"', 'severity=~"1|2"', intervals=("weekend-nights", "quarter-end"),
                            name="orders-weekend"),)
    assert muted_by(p, alert(), at(0)) == "interval:weekend-nights rule orders-weekend"
    quarter_end = create_alert(type="x", severity=2, summary="s", details={"labels": {"service": "orders"}},
                               event_timestamp=dt.datetime(2026, 6, 29, 12, tzinfo=dt.UTC))
    assert muted_by(p, quarter_end, quarter_end.event_timestamp) == "interval:quarter-end rule orders-weekend"


def test_no_maintenance_by_default() -> None:
    assert parse_policy({}).maintenance == maint.NO_MAINTENANCE


@pytest.mark.parametrize(("change", "loc", "message"), [
    (('"saturday", "sunday"', '"sunday:saturday", "x"'), ("time_intervals", 0, "time_intervals", 0, "weekdays", 1),
     "x is not a valid weekday"),
    (('"02:00"', '"2:00"'), ("time_intervals", 0, "time_intervals", 0, "times", 0),
     "couldn't parse timestamp 2:00, invalid format"),
    (('"Europe/Berlin"', '"Mars/Olympus"'), ("time_intervals", 0, "time_intervals", 0, "location"),
     "unknown time zone Mars/Olympus"),
    (('"-2:-1"', '"-15:5"'), ("time_intervals", 1, "time_intervals", 0, "days_of_month", 0),
     "end day must be negative if start day is negative"),
    (('"2026:2027"', '"2027:2026"'), ("time_intervals", 1, "time_intervals", 0, "years", 0),
     "end year 2026 is before start year 2027"),
    (('"december"]', '"decembre"]'), ("time_intervals", 1, "time_intervals", 0, "months", 3),
     "decembre is not a valid month"),
    (('name = "quarter-end"', 'name = "weekend-nights"'), ("time_intervals", 1, "name"),
     "a name given to two [[time_intervals]]"),
    (('"weekend-nights", "quarter-end"]', '"weekend-nights", "month-end"]'), ("maintenance", 0, "time_intervals", 1),
     "no [[time_intervals]] named 'month-end' (known: weekend-nights, quarter-end)"),
    (("'service=\"orders\"'", "'service=~\"(\"'"), ("maintenance", 0, "matchers", 0), "invalid regular expression"),
    (('location = "Europe/Berlin"', 'location = "Europe/Berlin"\nzone = 1'),
     ("time_intervals", 0, "time_intervals", 0, "zone"), "unknown key"),
])
def test_routing_file_errors(change: tuple[str, str], loc: tuple[Any, ...], message: str) -> None:
    """Each error with its key path (``tocsin check-config`` turns it into file:line)."""
    assert change[0] in ROUTING
    found = problems(tomllib.loads(ROUTING.replace(change[0], change[1], 1)))
    assert found, change
    assert found[0][0] == loc
    assert message in found[0][1]


# ------------------------------------------------------------------ the API's bodies


def test_postable_and_gettable() -> None:
    wid, w = postable(b'{"name": "db upgrade", "matchers": [{"name": "service", "value": "orders", "isRegex": false}],'
                      b' "startsAt": "2026-05-02T00:00:00Z", "endsAt": "2026-05-02T01:00:00Z", "createdBy": "alice"}')
    assert wid is None and w.name == "db upgrade" and not w.mute_resolved
    shown = gettable(w.model_copy(update={"id": "w1"}), at(10))
    assert shown["name"] == "db upgrade" and shown["status"] == {"state": "active"} and "muteResolved" not in shown
    assert query([w], ['service="orders"'], {"active": True, "pending": True, "expired": True}, at(10))[0]["id"] == "new"
    wire = w.wire()
    assert "muteResolved" not in wire and MaintenanceWindow.model_validate(wire) == w


@pytest.mark.parametrize("body", [
    b"[]", b"{}", b'{"matchers": [], "startsAt": "2026-05-02T00:00:00Z", "endsAt": "2026-05-02T01:00:00Z"}',
    b'{"matchers": [{"name": "a", "value": "b", "isRegex": false}], "startsAt": "2026-05-02T00:00:00Z",'
    b' "endsAt": "2026-05-02T01:00:00Z", "muteResolved": true}',
    b'{"matchers": [{"name": "a", "value": "b", "isRegex": false}], "startsAt": "2026-05-02T00:00:00",'
    b' "endsAt": "2026-05-02T01:00:00Z"}',
])
def test_postable_refuses(body: bytes) -> None:
    with pytest.raises(BadSilence):
        postable(body)


# ------------------------------------------------------------------ properties

SERVICES = ["orders", "payments", "risk"]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[MaintenancePolicy, list[MaintenanceWindow], AlertEvent]:
    rules = [rule(*([f'service="{draw(st.sampled_from(SERVICES))}"'] if draw(st.booleans()) else []),
                  intervals=tuple(draw(st.lists(st.sampled_from(sorted(INTERVALS)), min_size=1, max_size=2))))
             for _ in range(draw(st.integers(0, 2)))]
    ws = []
    for i in range(draw(st.integers(0, 3))):
        start = draw(st.integers(-600, 600))
        ws.append(window(f'service="{draw(st.sampled_from(SERVICES))}"', start=start,
                         end=start + draw(st.integers(1, 600)), updated=start - draw(st.integers(-60, 120)),
                         wid=f"w{draw(st.integers(0, 3))}", name=f"n{i}"))
    minutes = draw(st.integers(-60 * 24 * 3, 60 * 24 * 3))
    make = recovery if draw(st.booleans()) else alert
    return policy(*rules), ws, make(minutes, details={"labels": {"service": draw(st.sampled_from(SERVICES))}})


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.booleans())
def test_a_replay_decides_the_same(scenario: Any, notified: bool) -> None:
    """The same event decided again, with windows set after its time added (what a replay
    sees later), decides the same: event time decides."""
    pol, ws, event = scenario
    index, versions = windows(*ws)
    first = muted_by(pol, event, event.event_timestamp, notified, index, versions)
    later = [w.model_copy(update={"updated_at": event.event_timestamp + dt.timedelta(seconds=1 + i),
                                  "starts_at": event.event_timestamp - dt.timedelta(hours=1)})
             for i, w in enumerate(ws)]
    again_index, again_versions = windows(*ws, *later)
    assert muted_by(pol, event, event.event_timestamp, notified, again_index, again_versions) == first
    assert muted_by(pol, event, event.event_timestamp, notified, index, versions) == first


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_a_recovery_of_a_notified_alert_is_never_muted(scenario: Any) -> None:
    pol, ws, event = scenario
    index, versions = windows(*ws)
    rec = event if event.is_recovery else recovery(0, event_timestamp=event.event_timestamp,
                                                    details=event.details)
    assert muted_by(pol, rec, rec.event_timestamp, True, index, versions) is None
    assert muted_by(pol, rec, rec.event_timestamp, lambda: True, index, versions) is None
