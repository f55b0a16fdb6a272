"""Silences (decisions/silence.py): Alertmanager's matcher, state and update rules as tables of
cases, the throttle's ``silenced`` decision, and the properties "a replay decides the same" and
"a recovery of a notified alert is never muted unless muteResolved"."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.decisions import silence as rules
from tocsin.decisions.silence import InvalidSilence, SetResult, State
from tocsin.decisions.throttle import WindowState, decide
from tocsin.schemas.alert import AlertEvent, create_alert
from tocsin.schemas.messages import Outcome
from tocsin.schemas.silence import Silence, SilenceMatcher
from tocsin.web.silences import BadSilence, gettable, postable, query

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def m(text: str) -> SilenceMatcher:
    return rules.parse_matcher(text)


def sil(*matchers: str, start: float = 0, end: float = 60, updated: float | None = None, sid: str = "s1",
        mute_resolved: bool = False) -> Silence:
    return Silence(id=sid, matchers=tuple(m(x) for x in matchers), starts_at=at(start), ends_at=at(end),
                   updated_at=at(start if updated is None else updated), created_by="alice", comment="c",
                   mute_resolved=mute_resolved)


def alert(minutes: float = 10, **kw: Any) -> AlertEvent:
    base: dict[str, Any] = {"type": "daily_loss_limit", "severity": 1, "summary": "loss", "account_id": "A1",
                            "symbol": "BTC-USD", "event_timestamp": at(minutes)}
    base.update(kw)
    return create_alert(**base)


# ------------------------------------------------------------------ matchers

LABELS = {"alertname": "DiskFull", "instance": "db-1:9100", "severity": "critical", "empty": ""}

MATCHER_CASES = [
    # matcher, matches LABELS
    ('alertname="DiskFull"', True),
    ('alertname="diskfull"', False),
    ('alertname!="DiskFull"', False),
    ('alertname!="Other"', True),
    ('instance=~"db-.*"', True),
    ('instance=~"db"', False),  # anchored: the whole value
    ('instance=~"db-1"', False),
    ('instance=~".*:9100"', True),
    ('instance!~"db-.*"', False),
    ('instance!~"web-.*"', True),
    ('severity=~"critical|warning"', True),
    ('severity=~"crit"', False),
    ('missing=""', True),  # an absent label reads as ""
    ('missing!=""', False),
    ('missing=~".*"', True),
    ('missing=~".+"', False),
    ('missing!~".+"', True),
    ('missing!="x"', True),
    ('empty=""', True),
    ('alertname=~"(?i)diskfull"', True),
    (r'instance=~"db-\d:\d+"', True),
    ('alertname=~"DiskFull\\n"', False),  # $ is the end of the text, not before a last newline
]


@pytest.mark.parametrize(("text", "expected"), MATCHER_CASES)
def test_matcher(text: str, expected: bool) -> None:
    assert rules.matches(m(text), LABELS) is expected


def test_a_regex_is_anchored_at_the_very_end() -> None:
    assert not rules.matches(m('alertname=~"DiskFull"'), {"alertname": "DiskFull\n"})


@pytest.mark.parametrize(("text", "name", "op", "value"), [
    ('alertname="DiskFull"', "alertname", "=", "DiskFull"),
    ("alertname=DiskFull", "alertname", "=", "DiskFull"),
    ('job!~"node|api"', "job", "!~", "node|api"),
    ('a=~"x\\"y"', "a", "=~", 'x"y'),
    (' foo != "bar" ', "foo", "!=", "bar"),
    ('"odd name"="v"', "odd name", "=", "v"),
    ("a=", "a", "=", ""),
])
def test_parse_matcher(text: str, name: str, op: str, value: str) -> None:
    got = m(text)
    assert (got.name, got.op, got.value) == (name, op, value)
    assert m(str(got)) == got  # what it prints reads back as itself


@pytest.mark.parametrize("text", ["alertname", "=x", 'a=~"("', "", "a~b"])
def test_parse_matcher_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        m(text)


def test_labels_of_a_tocsin_alert_and_an_alertmanager_one() -> None:
    a = alert(source="risk-engine", strategy_id="s1")
    assert rules.labels_of(a) == {"alertname": "daily_loss_limit", "type": "daily_loss_limit", "severity": "1",
                                  "fingerprint": "daily_loss_limit:A1:BTC-USD:s1", "account_id": "A1",
                                  "symbol": "BTC-USD", "strategy_id": "s1", "source": "risk-engine"}
    am = create_alert("diskfull", 2, "disk full", fingerprint="3f2a9c", event_timestamp=T0,
                      details={"labels": {"alertname": "DiskFull", "severity": "warning", "job": "node",
                                          "odd": 3}})
    labels = rules.labels_of(am)
    assert labels["alertname"] == "DiskFull" and labels["severity"] == "warning"  # its labels win
    assert labels["job"] == "node" and labels["type"] == "diskfull" and labels["fingerprint"] == "3f2a9c"
    assert "odd" not in labels  # labels are strings


# ------------------------------------------------------------------ states and versions


@pytest.mark.parametrize(("minutes", "state"), [
    (-1, State.PENDING), (-0.001, State.PENDING), (0, State.ACTIVE), (59.99, State.ACTIVE), (60, State.EXPIRED),
    (61, State.EXPIRED),
])
def test_state_is_half_open(minutes: float, state: State) -> None:
    s = sil('a="b"')
    assert rules.state_at(s, at(minutes)) is state
    assert rules.covers(s, at(minutes)) is (state is State.ACTIVE)


def test_the_version_current_at_a_time_is_the_last_set_before_it() -> None:
    v1 = sil('a="b"', start=0, end=60, updated=0)
    v2 = sil('a="b"', start=0, end=30, updated=20)
    v3 = sil('a="b"', start=0, end=90, updated=20)  # same time: the later in the topic
    assert rules.current([v1, v2], at(-5)) is None
    assert rules.current([v1, v2], at(19)) == v1
    assert rules.current([v1, v2], at(20)) == v2
    assert rules.current([v1, v2, v3], at(25)) == v3
    assert rules.latest([v1, v2, v3]) == v3
    assert rules.latest([v2, v1]) == v2


# ------------------------------------------------------------------ Alertmanager's update rules

NOW = 30.0  # minutes: s1 (0..60) is active at NOW, pending (40..60) is pending

UPDATE_CASES = [
    # prev (start, end), new (start, end), changed matchers, can update
    ((0, 60), (0, 90), False, True),  # active: extend
    ((0, 60), (0, 31), False, True),  # active: shorten, not into the past
    ((0, 60), (0, 20), False, False),  # active: end before now
    ((0, 60), (5, 60), False, False),  # active: start moved
    ((0, 60), (0.001, 60), False, True),  # active: start within the same second (Unix seconds)
    ((0, 60), (0, 90), True, False),  # other matchers: never
    ((40, 60), (45, 70), False, True),  # pending: anything from now on
    ((40, 60), (35, 70), False, True),
    ((40, 60), (20, 70), False, False),  # pending: may not start before now
    ((0, 10), (0, 90), False, False),  # expired: never
]


@pytest.mark.parametrize(("prev", "new", "other", "expected"), UPDATE_CASES)
def test_can_update(prev: tuple[float, float], new: tuple[float, float], other: bool, expected: bool) -> None:
    a = sil('a="b"', start=prev[0], end=prev[1])
    b = sil('a="c"' if other else 'a="b"', start=new[0], end=new[1])
    assert rules.can_update(a, b, at(NOW)) is expected


def test_changing_mute_resolved_makes_a_new_silence() -> None:
    a = sil('a="b"')
    assert not rules.can_update(a, a.model_copy(update={"mute_resolved": True}), at(NOW))


@pytest.mark.parametrize(("prev", "expected"), [
    ((0, 60), (0, NOW)),  # active: ends now
    ((40, 60), (NOW, NOW)),  # pending: never begins
    ((0, 10), None),  # expired: stays as it is
])
def test_expire(prev: tuple[float, float], expected: tuple[float, float] | None) -> None:
    end = rules.expired(sil('a="b"', start=prev[0], end=prev[1]), at(NOW))
    if expected is None:
        assert end is None
        return
    assert end is not None and (end.starts_at, end.ends_at, end.updated) == (at(expected[0]), at(expected[1]), at(NOW))
    assert rules.state_at(end, at(NOW)) is State.EXPIRED


def test_set_creates_updates_or_replaces() -> None:
    now = at(NOW)
    new = sil('a="b"', start=NOW - 1, end=NOW + 60, sid="new")
    result, out = rules.plan_set(None, new, now, "id-1")
    assert result is SetResult.CREATED and len(out) == 1
    assert out[0].id == "id-1" and out[0].starts_at == now and out[0].updated == now  # never starts in the past

    prev = sil('a="b"', start=0, end=60)
    result, out = rules.plan_set(prev, prev.model_copy(update={"ends_at": at(120)}), now, "id-2")
    assert result is SetResult.UPDATED and [(v.id, v.ends_at, v.updated) for v in out] == [("s1", at(120), now)]

    result, out = rules.plan_set(prev, sil('a="other"', start=0, end=120), now, "id-3")
    assert result is SetResult.REPLACED
    assert [(v.id, v.ends_at) for v in out] == [("s1", now), ("id-3", at(120))]
    assert out[1].starts_at == now and out[1].matchers == (m('a="other"'),)

    expired_prev = sil('a="b"', start=0, end=10)
    result, out = rules.plan_set(expired_prev, sil('a="b"', start=NOW, end=90), now, "id-4")
    assert result is SetResult.REPLACED and [v.id for v in out] == ["id-4"]  # nothing left to expire


@pytest.mark.parametrize(("silence", "error"), [
    (sil('a="b"', start=NOW + 5, end=NOW + 5), "start time must be before end time"),
    (sil('a="b"', start=0, end=NOW - 1), "end time can't be in the past"),
    (sil('a=""', start=NOW, end=90), "must not match the empty string"),
    (sil('a=~".*"', 'b!="x"', start=NOW, end=90), None),  # != never matches "empty" in this sense
    (sil('a=~".*"', start=NOW, end=90), "must not match the empty string"),
])
def test_set_refuses_what_alertmanager_refuses(silence: Silence, error: str | None) -> None:
    if error is None:
        rules.plan_set(None, silence, at(NOW), "x")
        return
    with pytest.raises(InvalidSilence, match=error):
        rules.plan_set(None, silence, at(NOW), "x")


def test_a_bad_regex_never_becomes_a_silence() -> None:
    with pytest.raises(ValueError):
        m('a=~"(unclosed"')
    raw = SilenceMatcher(name="a", value="(unclosed", is_regex=True)
    bad = sil('b="c"').model_copy(update={"matchers": (raw,)})
    with pytest.raises(InvalidSilence, match="invalid label matcher 0"):
        rules.validate(bad)
    # one written by hand on the topic mutes nothing, and breaks nothing
    assert rules.silenced_by({"bad": [bad]}, alert(), at(10)) is None


# ------------------------------------------------------------------ silenced_by

SILENCED_CASES = [
    # silences (versions), alert minutes, kw, notified firing, expected
    ([sil('type="daily_loss_limit"')], 10, {}, False, "s1"),
    ([sil('type="daily_loss_limit"')], 60, {}, False, None),  # ended
    ([sil('type="daily_loss_limit"')], -1, {}, False, None),  # not begun
    ([sil('alertname="daily_loss_limit"', 'account_id="A1"')], 10, {}, False, "s1"),
    ([sil('account_id="A2"')], 10, {}, False, None),
    ([sil('severity=~"1|2"')], 10, {}, False, "s1"),
    ([sil('severity="3"')], 10, {}, False, None),
    ([sil('fingerprint=~"daily_loss_limit:A1:.*"')], 10, {}, False, "s1"),
    ([sil('symbol!="BTC-USD"')], 10, {}, False, None),
    ([sil('strategy_id=""', 'type="daily_loss_limit"')], 10, {}, False, "s1"),  # no strategy: ""
    # versions: the one set before the alert's time decides
    ([sil('type="daily_loss_limit"', end=60), sil('type="daily_loss_limit"', end=5, updated=5)], 10, {}, False, None),
    ([sil('type="daily_loss_limit"', end=60), sil('type="daily_loss_limit"', end=15, updated=15)], 10, {}, False, "s1"),
    ([sil('type="daily_loss_limit"', start=20, end=60, updated=0),
      sil('type="daily_loss_limit"', start=5, end=60, updated=5)], 10, {}, False, "s1"),
    # recoveries: muted unless their firing was notified, or the silence says muteResolved
    ([sil('type="daily_loss_limit"')], 10, {"action": "resolve"}, False, "s1"),
    ([sil('type="daily_loss_limit"')], 10, {"action": "resolve"}, True, None),
    ([sil('type="daily_loss_limit"', mute_resolved=True)], 10, {"action": "resolve"}, True, "s1"),
]


@pytest.mark.parametrize(("versions", "minutes", "kw", "notified", "expected"), SILENCED_CASES)
def test_silenced_by(versions: list[Silence], minutes: float, kw: dict[str, Any], notified: bool,
                     expected: str | None) -> None:
    a = alert(minutes, **kw)
    assert rules.silenced_by({"s1": versions}, a, a.event_timestamp, notified) == expected


def test_several_silences_name_the_smallest_id_and_ask_about_the_firing_only_when_needed() -> None:
    a, b = sil('type="daily_loss_limit"', sid="b"), sil('account_id="A1"', sid="a")
    asked: list[int] = []

    def notified() -> bool:
        asked.append(1)
        return True

    assert rules.silenced_by({"b": [a], "a": [b]}, alert(), at(10), notified) == "a"
    assert asked == []  # not a recovery
    muting = sil('type="daily_loss_limit"', sid="c", mute_resolved=True)
    assert rules.silenced_by({"b": [a], "c": [muting]}, alert(action="resolve"), at(10), notified) == "c"
    assert asked == [1]
    assert rules.silenced_by({}, alert(), at(10), notified) is None


def test_a_recovery_type_is_matched_on_its_own_fields() -> None:
    rec = create_alert("component_recovered", 3, "redis back", fingerprint="component_recovered:redis",
                       event_timestamp=at(10))
    assert rec.is_recovery and rec.resolves == "component_unhealthy:redis"
    assert rules.silenced_by({"s1": [sil('type="component_unhealthy"')]}, rec, at(10)) is None
    assert rules.silenced_by({"s1": [sil('fingerprint=~"component_.*:redis"')]}, rec, at(10)) == "s1"


# ------------------------------------------------------------------ the throttle's decision


def test_decide_silenced_leaves_the_window_alone() -> None:
    a = alert(10)
    v = decide(None, a, 600, silenced_by="s1")
    assert (v.outcome, v.reason, v.new_state, v.notifies) == (Outcome.SILENCED, "s1", None, False)
    assert v.dedupe_key == f"{a.fingerprint}:{int(a.epoch // 600)}"
    # the first alert after the silence is the window's first: notified
    assert decide(None, alert(11), 600).outcome is Outcome.NOTIFY
    state = WindowState(123, 4)
    assert decide(state, a, 600, silenced_by="s1").suppressed_count == 4
    r = alert(10, action="resolve")
    assert decide(None, r, 600, silenced_by="s1").dedupe_key.endswith(f":{r.alert_id}")


# ------------------------------------------------------------------ properties

EQUAL = [("type", "daily_loss_limit"), ("account_id", "A1"), ("account_id", "A2"), ("severity", "1"),
         ("job", "node"), ("alertname", "daily_loss_limit"), ("symbol", "")]
REGEX = [("account_id", "A.*"), ("severity", "1|2"), ("type", "daily_.*"), ("job", ".+"), ("symbol", "ETH.*")]


@st.composite
def matchers(draw: Any) -> SilenceMatcher:
    regex = draw(st.booleans())
    name, value = draw(st.sampled_from(REGEX if regex else EQUAL))
    return SilenceMatcher(name=name, value=value, is_regex=regex, is_equal=draw(st.sampled_from([True, True, False])))


@st.composite
def histories(draw: Any) -> tuple[dict[str, list[Silence]], int]:
    """Silences set, updated and expired through the API's rules (plan_set, expired) at
    increasing times; and the last of those times."""
    now, out = -60, {}
    shown: dict[str, Silence] = {}
    for i in range(draw(st.integers(1, 6))):
        now += draw(st.integers(0, 40))
        t = at(now)
        action = draw(st.sampled_from(["set", "update", "expire"])) if shown else "set"
        target = shown[draw(st.sampled_from(sorted(shown)))] if shown else None
        try:
            if action == "expire" and target is not None:
                end = rules.expired(target, t)
                made = [end] if end is not None else []
            else:
                ms = tuple(draw(st.lists(matchers(), min_size=1, max_size=3)))
                start, length = draw(st.integers(-30, 60)), draw(st.integers(1, 120))
                new = Silence(id=target.id if action == "update" and target else "new", matchers=ms,
                              starts_at=at(now + start), ends_at=at(now + start + length),
                              mute_resolved=draw(st.booleans()))
                if action == "update" and target is not None and draw(st.booleans()):
                    new = new.model_copy(update={"matchers": target.matchers, "mute_resolved": target.mute_resolved})
                _, made = rules.plan_set(target if action == "update" else None, new, t, f"s{i}")
        except InvalidSilence:
            continue
        for v in made:
            out.setdefault(v.id, []).append(v)
            shown[v.id] = v
    return out, now


def alerts_at(minute: int, data: Any) -> AlertEvent:
    return alert(minute, account_id=data.draw(st.sampled_from(["A1", "A2"])),
                 severity=data.draw(st.sampled_from([1, 2])),
                 action=data.draw(st.sampled_from(["trigger", "resolve"])))


@settings(max_examples=300, deadline=None)
@given(histories(), st.data())
def test_a_replay_decides_the_same(history: tuple[dict[str, list[Silence]], int], data: Any) -> None:
    """Live, a worker knows the versions set up to an alert's time; a replay knows them all.
    Both decide the same; and so does a reader that keeps only each silence's latest version
    (the API's rules never change what was silenced before the change)."""
    silences, last = history
    a = alerts_at(data.draw(st.integers(-60, last + 60)), data)
    notified = data.draw(st.booleans())
    t = a.event_timestamp
    live = {sid: [v for v in vs if v.updated <= t] for sid, vs in silences.items()}
    live = {sid: vs for sid, vs in live.items() if vs}
    replayed = rules.silenced_by(silences, a, t, notified)
    assert rules.silenced_by(live, a, t, notified) == replayed
    # the latest version as if it had been so since the silence was made
    latest_only = {sid: [rules.latest(vs).model_copy(update={"updated_at": vs[0].updated})]
                   for sid, vs in silences.items()}
    assert rules.silenced_by(latest_only, a, t, notified) == replayed


@settings(max_examples=300, deadline=None)
@given(histories(), st.data())
def test_a_recovery_of_a_notified_alert_is_never_muted_unless_mute_resolved(
        history: tuple[dict[str, list[Silence]], int], data: Any) -> None:
    silences, last = history
    a = alert(data.draw(st.integers(-60, last + 60)), account_id=data.draw(st.sampled_from(["A1", "A2"])), action="resolve")
    sid = rules.silenced_by(silences, a, a.event_timestamp, True)
    if sid is not None:
        v = rules.current(silences[sid], a.event_timestamp)
        assert v is not None and v.mute_resolved and rules.covers(v, a.event_timestamp)
        assert rules.matches_all(v.matchers, rules.labels_of(a))
    # and one whose firing was not notified is muted by any silence that matches it
    unmuted = rules.silenced_by(silences, a, a.event_timestamp, False)
    assert (unmuted is None) is (rules.silenced_by(silences, a.model_copy(update={"action": "trigger"}),
                                                   a.event_timestamp) is None)


# ------------------------------------------------------------------ the API's JSON (streams/silences.py)


def test_postable_and_gettable_round_trip() -> None:
    raw = (b'{"matchers": [{"name": "alertname", "value": "Disk.*", "isRegex": true}], '
           b'"startsAt": "2024-05-01T12:00:00.123456Z", "endsAt": "2024-05-01T15:00:00+02:00", '
           b'"createdBy": "alice", "comment": "swap", "muteResolved": true}')
    sid, new = postable(raw)
    assert sid is None and new.matchers == (SilenceMatcher(name="alertname", value="Disk.*", is_regex=True),)
    assert new.starts_at == dt.datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=dt.UTC)  # to the millisecond
    assert new.ends_at == dt.datetime(2024, 5, 1, 13, 0, tzinfo=dt.UTC) and new.mute_resolved
    shown = gettable(new, at(-30))
    assert shown == {"id": "new", "status": {"state": "pending"}, "updatedAt": "2024-05-01T12:00:00.123Z",
                     "matchers": [{"name": "alertname", "value": "Disk.*", "isRegex": True, "isEqual": True}],
                     "startsAt": "2024-05-01T12:00:00.123Z", "endsAt": "2024-05-01T13:00:00.000Z",
                     "createdBy": "alice", "comment": "swap", "muteResolved": True}


@pytest.mark.parametrize(("raw", "error"), [
    (b"[]", "JSON object"),
    (b"{", "not JSON"),
    (b'{"startsAt": "2024-05-01T12:00:00Z", "endsAt": "2024-05-01T13:00:00Z"}', "matchers in body is required"),
    (b'{"matchers": [], "startsAt": "2024-05-01T12:00:00Z", "endsAt": "2024-05-01T13:00:00Z"}', "matchers"),
    (b'{"matchers": [{"name": "a", "value": "b"}], "startsAt": "2024-05-01T12:00:00Z", '
     b'"endsAt": "2024-05-01T13:00:00Z"}', "isRegex"),
    (b'{"matchers": [{"name": "a", "value": "b", "isRegex": "no"}], "startsAt": "2024-05-01T12:00:00Z", '
     b'"endsAt": "2024-05-01T13:00:00Z"}', "isRegex"),
    (b'{"matchers": [{"name": "a", "value": "b", "isRegex": false}], "startsAt": "2024-05-01T12:00:00", '
     b'"endsAt": "2024-05-01T13:00:00Z"}', "naive"),
    (b'{"id": 5, "matchers": [{"name": "a", "value": "b", "isRegex": false}], "startsAt": "2024-05-01T12:00:00Z", '
     b'"endsAt": "2024-05-01T13:00:00Z"}', "id"),
])
def test_postable_refuses(raw: bytes, error: str) -> None:
    with pytest.raises(BadSilence, match=error):
        postable(raw)


def test_query_filters_and_orders_as_alertmanager() -> None:
    now = at(NOW)
    active_late = sil('a="b"', 'c=~"d.*"', start=0, end=90, sid="active-late")
    active_soon = sil('a="b"', start=0, end=40, sid="active-soon")
    pending = sil('a="b"', start=40, end=90, sid="pending")
    old = sil('a="b"', start=0, end=10, sid="old")
    older = sil('a="b"', start=0, end=5, sid="older")
    every = [older, pending, active_late, old, active_soon]
    all_states = {"active": True, "pending": True, "expired": True}
    ids = [s["id"] for s in query(every, [], all_states, now)]
    assert ids == ["active-soon", "active-late", "pending", "old", "older"]
    assert [s["id"] for s in query(every, ['c=~"d.*"'], all_states, now)] == ["active-late"]
    assert [s["id"] for s in query(every, ['c=~"d"'], all_states, now)] == []  # the same matcher, exactly
    assert [s["id"] for s in query(every, [], {**all_states, "expired": False}, now)] == [
        "active-soon", "active-late", "pending"]
    with pytest.raises(BadSilence):
        query(every, ["nonsense"], all_states, now)


def reference(silences: dict[str, list[Silence]], a: AlertEvent, t: dt.datetime, notified: bool) -> str | None:
    """silenced_by spelt out with the rules' plain functions."""
    found = []
    for versions in silences.values():
        v = rules.current(versions, t)
        if v is not None and rules.covers(v, t) and rules.matches_all(v.matchers, rules.labels_of(a)):
            found.append(v)
    if a.is_recovery and notified:
        found = [v for v in found if v.mute_resolved]
    return min((v.id for v in found), default=None)


@settings(max_examples=200, deadline=None)
@given(histories(), st.data())
def test_the_compiled_index_decides_as_the_rules_say(history: tuple[dict[str, list[Silence]], int], data: Any) -> None:
    silences, last = history
    index = rules.SilenceIndex()
    for sid, versions in silences.items():  # as the view builds it, one version at a time
        for i in range(1, len(versions) + 1):
            index.set(sid, versions[:i])
    for _ in range(5):
        a = alerts_at(data.draw(st.integers(-60, last + 60)), data)
        notified = data.draw(st.booleans())
        expected = reference(silences, a, a.event_timestamp, notified)
        assert rules.silenced_by(index, a, a.event_timestamp, notified) == expected
        assert rules.silenced_by(silences, a, a.event_timestamp, notified) == expected
