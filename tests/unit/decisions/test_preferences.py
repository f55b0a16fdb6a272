"""Recipients' preferences (decisions/preferences.py): a table of cases over the rules, their
order and the event's time, the routing file's ``[recipients]`` and its errors, and hypothesis
properties: a replay decides the same, a recovery is never held back by quiet hours, a SEV1
never by quiet hours, nothing is added that is not the recipient's own and enabled."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tocsin.decisions.preferences import (
    Preferences,
    QuietHours,
    Recipient,
    Rule,
    Version,
    apply,
    in_force,
)
from tocsin.decisions.routing import PreferencesFile, check_preferences, parse_policy, problems
from tocsin.errors import RoutingError

UTC = dt.UTC
ALICE = ("slack:alice", "email:alice", "telegram:alice")
ENABLED = {*ALICE, "webhook:default", "console:default", "email:bob"}


def at(hour: int, minute: int = 0, day: int = 7) -> dt.datetime:
    return dt.datetime(2026, 12, day, hour, minute, tzinfo=UTC)


def alice(**kw: object) -> Recipient:
    return Recipient("alice", "person", ALICE, Preferences(**kw))  # type: ignore[arg-type]


NIGHT = QuietHours(dt.time(22), dt.time(7))

CASES = [
    # (name, routed, recipient, severity, type, when, recovery, destinations left, reasons' start)
    ("no preferences: routing's", ["slack:alice", "webhook:default"], alice(), 2, "t", at(12), False,
     ("slack:alice", "webhook:default"), ()),
    ("opt out of a channel for SEV3", ["email:alice", "webhook:default"],
     alice(opt_out=(Rule(severities=frozenset({3}), channels=frozenset({"email"})),)), 3, "t", at(12), False,
     ("webhook:default",), ("email:alice removed (alice opted out: severity 3)",)),
    ("the opt-out's severity does not match", ["email:alice"],
     alice(opt_out=(Rule(severities=frozenset({3}), channels=frozenset({"email"})),)), 2, "t", at(12), False,
     ("email:alice",), ()),
    ("opt out of a type, every channel of hers", ["email:alice", "slack:alice", "webhook:default"],
     alice(opt_out=(Rule(types=frozenset({"disk_full"})),)), 2, "disk_full", at(12), False,
     ("webhook:default",), ("email:alice removed (alice opted out: type disk_full)",
                            "slack:alice removed (alice opted out: type disk_full)")),
    ("opt out of one destination by name", ["email:alice", "slack:alice"],
     alice(opt_out=(Rule(destinations=("slack:alice",)),)), 2, "t", at(12), False,
     ("email:alice",), ("slack:alice removed (alice opted out: every alert)",)),
    ("opt in adds her telegram for SEV1 orders", ["webhook:default"],
     alice(opt_in=(Rule(severities=frozenset({1}), types=frozenset({"order_rejected"}),
                        destinations=("telegram:alice",)),)), 1, "order_rejected", at(12), False,
     ("webhook:default", "telegram:alice"), ("telegram:alice added (alice opted in: severity 1, type order_rejected)",)),
    ("opt in does not match another type", ["webhook:default"],
     alice(opt_in=(Rule(types=frozenset({"order_rejected"}), destinations=("telegram:alice",)),)), 1, "x", at(12),
     False, ("webhook:default",), ()),
    ("opt in of a disabled destination adds nothing", ["webhook:default"],
     Recipient("alice", "person", ("pagerduty:alice",),
               Preferences(opt_in=(Rule(destinations=("pagerduty:alice",)),))), 1, "t", at(12), False,
     ("webhook:default",), ()),
    ("quiet hours keep a SEV2 from her at 23:00 UTC", ["slack:alice", "webhook:default"], alice(quiet_hours=NIGHT),
     2, "t", at(23), False, ("webhook:default",), ("slack:alice removed (alice's quiet hours 22:00-07:00 UTC)",)),
    ("quiet hours across midnight: 06:59 is in", ["slack:alice"], alice(quiet_hours=NIGHT), 3, "t", at(6, 59),
     False, ("console:default",), ("slack:alice removed (alice's quiet hours 22:00-07:00 UTC)",
                                   "console:default added (the preferences left no destination)")),
    ("quiet hours end is exclusive: 07:00 is out", ["slack:alice"], alice(quiet_hours=NIGHT), 3, "t", at(7), False,
     ("slack:alice",), ()),
    ("quiet hours never hold a SEV1", ["slack:alice"], alice(quiet_hours=NIGHT), 1, "t", at(23), False,
     ("slack:alice",), ()),
    ("quiet hours never hold a recovery", ["slack:alice"], alice(quiet_hours=NIGHT), 2, "t", at(23), True,
     ("slack:alice",), ()),
    ("an opt-out holds a recovery as it held the firing", ["email:alice", "webhook:default"],
     alice(opt_out=(Rule(channels=frozenset({"email"})),)), 2, "t", at(12), True, ("webhook:default",),
     ("email:alice removed (alice opted out: every alert)",)),
    ("quiet hours in her time zone: 23:30 UTC is 00:30 in Berlin", ["slack:alice"],
     alice(time_zone="Europe/Berlin", quiet_hours=QuietHours(dt.time(0), dt.time(6))), 2, "t", at(23, 30), False,
     ("console:default",), ("slack:alice removed (alice's quiet hours 00:00-06:00 Europe/Berlin)",
                            "console:default added (the preferences left no destination)")),
    ("daytime quiet hours (start before end)", ["slack:alice"],
     alice(quiet_hours=QuietHours(dt.time(12), dt.time(13))), 2, "t", at(12, 30), False, ("console:default",),
     ("slack:alice removed (alice's quiet hours 12:00-13:00 UTC)",
      "console:default added (the preferences left no destination)")),
    ("a destination not hers is never touched", ["webhook:default"], alice(quiet_hours=NIGHT,
     opt_out=(Rule(),)), 3, "t", at(23), False, ("webhook:default",), ()),
]


@pytest.mark.parametrize(("routed", "recipient", "severity", "alert_type", "when", "recovery", "left", "why"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_preferences_cases(routed: list[str], recipient: Recipient, severity: int, alert_type: str,
                           when: dt.datetime, recovery: bool, left: tuple[str, ...], why: tuple[str, ...]) -> None:
    got = apply(routed, [recipient], severity, alert_type, when, is_recovery=recovery, enabled=ENABLED)
    assert got.destinations == left
    assert got.changes == why
    assert got.reason == ("preferences: " + "; ".join(why) if why else "")


def test_the_version_in_force_at_the_event_time_decides() -> None:
    r = alice()
    out = Preferences(opt_out=(Rule(),))
    versions = [Version(at(10), out), Version(at(14), None)]
    assert in_force(r, versions, at(9)) == r.preferences  # before any: the file's
    assert in_force(r, versions, at(10)) == out
    assert in_force(r, versions, at(13, 59)) == out
    assert in_force(r, versions, at(14)) == r.preferences  # reset to the file's
    routed = ["slack:alice", "webhook:default"]
    assert apply(routed, [r], 2, "t", at(12), versions={"alice": versions}).destinations == ("webhook:default",)
    assert apply(routed, [r], 2, "t", at(15), versions={"alice": versions}).destinations == tuple(routed)


# --------------------------------------------------------------------------- the routing file

FILE = {
    "recipients": {
        "alice": {"destinations": ["slack:alice", "email:alice"], "time_zone": "Europe/Berlin",
                  "quiet_hours": {"start": "22:00", "end": "07:00"},
                  "opt_out": [{"channels": ["email"], "severities": [3]}]},
        "payments": {"kind": "team", "destinations": ["webhook:payments"],
                     "opt_in": [{"destinations": ["webhook:payments"], "types": ["order_rejected"]}]},
    }
}


def test_the_routing_file_recipients() -> None:
    policy = parse_policy(FILE)
    a, team = policy.recipients
    assert (a.name, a.kind, a.destinations) == ("alice", "person", ("slack:alice", "email:alice"))
    assert a.preferences == Preferences("Europe/Berlin", NIGHT, (),
                                        (Rule(frozenset({3}), frozenset(), frozenset({"email"}), ()),))
    assert (team.kind, team.preferences.opt_in[0].destinations) == ("team", ("webhook:payments",))
    assert parse_policy({}).recipients == ()


BAD = [
    ({"alice": {"destinations": []}}, ("recipients", "alice", "destinations"), "a non-empty list of destinations"),
    ({"alice": {"destinations": ["slack:a"], "time_zone": "Mars/Olympus"}}, ("recipients", "alice", "time_zone"),
     "an IANA time zone name"),
    ({"alice": {"destinations": ["slack:a"], "time_zone": "../../etc/passwd"}}, ("recipients", "alice", "time_zone"),
     "an IANA time zone name"),
    ({"alice": {"destinations": ["slack:a"], "quiet_hours": {"start": "25:00", "end": "07:00"}}},
     ("recipients", "alice", "quiet_hours", "start"), "HH:MM"),
    ({"alice": {"destinations": ["slack:a"], "opt_out": [{"channels": ["pager"]}]}},
     ("recipients", "alice", "opt_out", 0, "channels", 0), "a channel"),
    ({"alice": {"destinations": ["slack:a"], "opt_out": [{"severities": [4]}]}},
     ("recipients", "alice", "opt_out", 0, "severities", 0), "1, 2 or 3"),
    ({"alice": {"destinations": ["slack:a"], "kind": "robot"}}, ("recipients", "alice", "kind"), "\"person\" or"),
    ({"alice": {"destinations": ["slack:a"], "opt_in": [{"destinations": ["email:bob"]}]}},
     ("recipients", "alice", "opt_in", 0, "destinations", 0), "email:bob is not one of this recipient's"),
    ({"alice": {"destinations": ["slack:a"], "opt_in": [{"severities": [1]}]}},
     ("recipients", "alice", "opt_in", 0, "destinations"), "an opt_in names the destinations it adds"),
    ({"alice": {"destinations": ["slack:a"]}, "bob": {"destinations": ["slack:a"]}},
     ("recipients", "bob", "destinations", 0), "slack:a is already alice's"),
    ({"al ice": {"destinations": ["slack:a"]}}, ("recipients", "al ice"), "a recipient's name"),
    ({"alice": {"destinations": ["slack:a"], "mood": "calm"}}, ("recipients", "alice", "mood"), "unknown key"),
]


@pytest.mark.parametrize(("recipients", "loc", "said"), BAD, ids=[str(b[1]) for b in BAD])
def test_routing_file_errors_name_the_key(recipients: dict[str, object], loc: tuple[object, ...], said: str) -> None:
    found = problems({"recipients": recipients})
    assert found and found[0][0] == loc and said in found[0][1], found
    with pytest.raises(RoutingError):
        parse_policy({"recipients": recipients})


def test_an_api_body_names_only_the_persons_destinations() -> None:
    prefs = PreferencesFile.model_validate({"opt_in": [{"destinations": ["webhook:evil"]}]})
    err = check_preferences(prefs, ("slack:alice",), ())
    assert err is not None and "webhook:evil is not one of this recipient's destinations" in str(err)
    assert check_preferences(PreferencesFile.model_validate({"opt_out": [{"channels": ["slack"]}]}),
                             ("slack:alice",), ()) is None


# --------------------------------------------------------------------------- properties

hours = st.builds(dt.time, st.integers(0, 23), st.sampled_from([0, 30]))
rules = st.builds(Rule, st.frozensets(st.integers(1, 3), max_size=2), st.frozensets(st.sampled_from(["a", "b"]), max_size=1),
                  st.frozensets(st.sampled_from(["slack", "email", "telegram"]), max_size=2),
                  st.lists(st.sampled_from(ALICE), max_size=2, unique=True).map(tuple))
prefs = st.builds(Preferences, st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
                  st.one_of(st.none(), st.builds(QuietHours, hours, hours)),
                  st.lists(rules, max_size=2).map(tuple), st.lists(rules, max_size=2).map(tuple))
routed = st.lists(st.sampled_from([*ALICE, "webhook:default", "email:bob"]), min_size=1, unique=True)
times = st.datetimes(min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2027, 12, 31), timezones=st.just(UTC))


@given(routed, prefs, st.integers(1, 3), st.sampled_from(["a", "b"]), times, st.booleans())
def test_a_replay_decides_the_same(r: list[str], p: Preferences, sev: int, t: str, when: dt.datetime, rec: bool) -> None:
    who = [Recipient("alice", "person", ALICE, p)]
    assert apply(r, who, sev, t, when, is_recovery=rec, enabled=ENABLED) == \
        apply(list(r), who, sev, t, when, is_recovery=rec, enabled=ENABLED)


@given(routed, prefs, st.integers(1, 3), st.sampled_from(["a", "b"]), times)
def test_quiet_hours_never_hold_a_recovery_nor_a_sev1(r: list[str], p: Preferences, sev: int, t: str,
                                                      when: dt.datetime) -> None:
    """What quiet hours alone would remove: nothing of a recovery, nothing of a SEV1."""
    who = [Recipient("alice", "person", ALICE, Preferences(p.time_zone, p.quiet_hours))]
    assert apply(r, who, sev, t, when, is_recovery=True, enabled=ENABLED).destinations == tuple(r)
    assert apply(r, who, 1, t, when, enabled=ENABLED).destinations == tuple(r)


@given(routed, prefs, st.integers(1, 3), st.sampled_from(["a", "b"]), times)
def test_a_recovery_reaches_every_destination_its_firing_did(r: list[str], p: Preferences, sev: int, t: str,
                                                             when: dt.datetime) -> None:
    """Preferences in force at both: whatever the firing reached, its recovery reaches (a
    recovery of a notified alert is never muted by preferences)."""
    who = [Recipient("alice", "person", ALICE, p)]
    firing = apply(r, who, sev, t, when, enabled=ENABLED).destinations
    recovery = apply(r, who, sev, t, when + dt.timedelta(hours=3), is_recovery=True, enabled=ENABLED).destinations
    assert set(firing) - {"console:default"} <= set(recovery)


@given(routed, prefs, st.integers(1, 3), st.sampled_from(["a", "b"]), times, st.booleans())
def test_only_her_own_enabled_destinations_are_added_and_never_nothing(
        r: list[str], p: Preferences, sev: int, t: str, when: dt.datetime, rec: bool) -> None:
    got = apply(r, [Recipient("alice", "person", ALICE, p)], sev, t, when, is_recovery=rec, enabled=ENABLED)
    assert got.destinations
    assert set(got.destinations) - set(r) <= (set(ALICE) & ENABLED) | {"console:default"}
    others = [d for d in r if d not in ALICE]  # not hers: never touched
    assert others == [d for d in got.destinations if d not in ALICE and d != "console:default"]


def test_the_dry_run_applies_the_routing_files_preferences() -> None:
    from tocsin.decisions.preview import preview
    from tocsin.schemas import create_alert

    policy = parse_policy({"severity": {"2": ["webhook:default", "slack:alice"]}, **FILE})
    ev = create_alert("disk_full", 2, "disk", account_id="a", event_timestamp=at(21, 30))  # 22:30 in Berlin
    p = preview(ev, policy, {"webhook:default", "slack:alice"}, 600, at(21, 30))
    assert [d.route.destination for d in p.deliveries] == ["webhook:default"]
    assert p.decision["reason"] == ("first in window; preferences: slack:alice removed "
                                    "(alice's quiet hours 22:00-07:00 Europe/Berlin)")
