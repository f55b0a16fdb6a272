"""Routing (DESIGN "Configuration"): the default matrix, type recipients, disabled
destinations, failover chains and routing-file validation."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tocsin.decisions.routing import (
    DEFAULT_FAILOVER_ORDER,
    ReceiverPolicy,
    RoutingPolicy,
    default_failover,
    default_policy_path,
    load_policy,
    parse_policy,
    route,
)
from tocsin.errors import ConfigError, RoutingError

DEFAULT = load_policy(None)

ALL_DEFAULTS = {"console:default", "webhook:default", "email:default", "email:risk", "email:ops",
                "slack:default", "telegram:default"}  # file:default left off: see below


def dests(severity: int, type_: str = "order_rejected", enabled: set[str] = ALL_DEFAULTS,
          policy: RoutingPolicy = DEFAULT) -> list[str]:
    return [r.destination for r in route(severity, type_, policy, enabled)]


# ---------------------------------------------------------------- the default matrix


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        (1, ["email:default", "webhook:default", "console:default"]),
        (2, ["webhook:default", "console:default"]),
        (3, ["console:default"]),
    ],
)
def test_default_matrix(severity: int, expected: list[str]) -> None:
    assert dests(severity) == expected


@pytest.mark.parametrize("severity", [1, 2, 3])
def test_file_channel_is_always_on_when_enabled(severity: int) -> None:
    assert "file:default" in dests(severity, enabled=ALL_DEFAULTS | {"file:default"})


@pytest.mark.parametrize(
    ("severity", "enabled", "expected"),
    [
        # only console configured: everything lands on the console
        (1, set(), ["console:default"]),
        (2, set(), ["console:default"]),
        # email not configured: SEV1 still reaches the webhook
        (1, {"webhook:default"}, ["webhook:default", "console:default"]),
        # webhook not configured: SEV1 still reaches email; SEV2 only the console
        (1, {"email:default"}, ["email:default", "console:default"]),
        (2, {"email:default"}, ["console:default"]),
        # Slack/Telegram configured but not routed by default: not used
        (1, {"slack:default", "telegram:default"}, ["console:default"]),
    ],
)
def test_disabled_destinations_are_skipped(severity: int, enabled: set[str], expected: list[str]) -> None:
    assert dests(severity, enabled=enabled) == expected


@pytest.mark.parametrize(
    ("type_", "severity", "expected"),
    [
        ("daily_loss_limit", 1, ["email:default", "webhook:default", "email:risk", "console:default"]),
        ("daily_loss_limit", 3, ["email:risk", "console:default"]),
        ("kill_switch_activated", 1,
         ["email:default", "webhook:default", "email:ops", "email:risk", "console:default"]),
        ("kill_switch_activated", 2, ["webhook:default", "email:ops", "email:risk", "console:default"]),
        ("position_limit_hit", 2, ["webhook:default", "email:risk", "console:default"]),
        ("order_filled", 2, ["webhook:default", "console:default"]),
        ("some_new_type", 1, ["email:default", "webhook:default", "console:default"]),
    ],
)
def test_type_specific_recipients_add(type_: str, severity: int, expected: list[str]) -> None:
    assert dests(severity, type_) == expected


def test_type_recipient_not_configured_is_skipped() -> None:
    assert dests(2, "kill_switch_activated", enabled={"webhook:default", "email:ops"}) == [
        "webhook:default", "email:ops", "console:default"]


def test_no_repeats() -> None:
    policy = parse_policy({"severity": {"1": ["webhook:default", "webhook:default"]},
                           "types": {"x": ["webhook:default", "console:default"]},
                           "always": ["console:default"]})
    assert dests(1, "x", policy=policy) == ["webhook:default", "console:default"]


def test_routes_carry_the_receiver_policy() -> None:
    (r,) = [r for r in route(1, "x", DEFAULT, ALL_DEFAULTS) if r.destination == "webhook:default"]
    assert r.receiver == "webhook:default"
    # the two tiers, fast then slow, as one schedule; a contact for each step and the first
    assert r.backoff_s == (1.0, 2.0, 4.0, 8.0, 300.0, 1800.0, 7200.0, 43200.0, 86400.0)
    assert r.max_attempts == 10


def test_the_default_receiver_settings() -> None:
    rp = DEFAULT.policy_for("webhook:default")
    assert rp.backoff_s == (1.0, 2.0, 4.0, 8.0)
    assert rp.slow_backoff_s == (300.0, 1800.0, 7200.0, 43200.0, 86400.0)
    assert rp.max_age_s == 2 * 86400.0
    assert (rp.breaker_failures, rp.breaker_reset_s, rp.breaker_max_reset_s) == (5, 30.0, 300.0)
    assert rp.max_attempts_set is None and rp.max_attempts == 10
    # the built-in file says what the built-in defaults say
    assert parse_policy({}).default_receiver == DEFAULT.default_receiver


@pytest.mark.parametrize(
    ("settings", "schedule", "attempts"),
    [
        ({}, (1.0, 2.0, 4.0, 8.0, 300.0, 1800.0, 7200.0, 43200.0, 86400.0), 10),
        ({"slow_backoff_s": []}, (1.0, 2.0, 4.0, 8.0), 5),  # the fast tier only: the seed's schedule
        ({"backoff_s": [0.5], "slow_backoff_s": [60, 600]}, (0.5, 60.0, 600.0), 4),
        ({"backoff_s": [1, 2], "max_attempts": 6}, (1.0, 2.0, 300.0, 1800.0, 7200.0, 43200.0, 86400.0), 6),
        ({"max_attempts": 20, "slow_backoff_s": [60]}, (1.0, 2.0, 4.0, 8.0, 60.0), 20),  # the last step repeats
    ],
)
def test_two_tier_schedule(settings: dict[str, Any], schedule: tuple[float, ...], attempts: int) -> None:
    policy = parse_policy({"severity": {"2": ["webhook:default"]}, "receivers": {"webhook:default": settings}})
    (r,) = [r for r in route(2, "x", policy, {"webhook:default"}) if r.destination == "webhook:default"]
    assert (r.backoff_s, r.max_attempts) == (schedule, attempts)


def test_receiver_settings_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "routing.toml"
    path.write_text("""
[receivers.default]
max_age_s = 3600
slow_backoff_s = [60, 600]
breaker_failures = 3
breaker_reset_s = 10
[receivers."webhook:default"]
backoff_s = [0.5, 1]
max_age_s = 86400
breaker_reset_s = 600
""")
    policy = load_policy(path)
    hook, mail = policy.policy_for("webhook:default"), policy.policy_for("email:default")
    assert (hook.backoff_s, hook.slow_backoff_s, hook.max_age_s) == ((0.5, 1.0), (60.0, 600.0), 86400.0)
    assert (hook.breaker_failures, hook.breaker_reset_s) == (3, 600.0)
    assert hook.breaker_max_reset_s == 600.0  # a longer reset alone: the cap follows it
    assert (mail.backoff_s, mail.max_age_s, mail.max_attempts) == ((1.0, 2.0, 4.0, 8.0), 3600.0, 7)
    assert (mail.breaker_reset_s, mail.breaker_max_reset_s) == (10.0, 300.0)


# ---------------------------------------------------------------- failover


@pytest.mark.parametrize(
    ("destination", "chain"),
    [
        ("webhook:default", ("email:default", "console:default")),
        ("webhook:ops", ("email:default", "console:default")),
        ("email:default", ("console:default",)),
        ("email:risk", ("console:default",)),
        ("slack:default", ("email:default", "console:default")),
        ("telegram:default", ("email:default", "console:default")),
        ("console:default", ()),
        ("file:default", ()),
    ],
)
def test_default_failover_chain(destination: str, chain: tuple[str, ...]) -> None:
    assert DEFAULT_FAILOVER_ORDER == ("webhook", "email", "console")
    assert default_failover(destination) == chain


@pytest.mark.parametrize(
    ("enabled", "webhook_chain", "email_chain"),
    [
        (ALL_DEFAULTS, ("email:default", "console:default"), ("console:default",)),
        ({"webhook:default"}, ("console:default",), None),  # email off: left out of the chain
        ({"webhook:default", "email:default"}, ("email:default", "console:default"), ("console:default",)),
    ],
)
def test_failover_chains_of_routes(enabled: set[str], webhook_chain: tuple[str, ...],
                                   email_chain: tuple[str, ...] | None) -> None:
    routes = {r.destination: r.failover for r in route(1, "x", DEFAULT, enabled)}
    assert routes["webhook:default"] == webhook_chain
    assert routes.get("email:default") == email_chain
    assert routes["console:default"] == ()


def test_failover_from_the_routing_file_and_never_itself() -> None:
    policy = parse_policy({
        "severity": {"1": ["slack:default"]},
        "receivers": {"slack:default": {"failover": ["slack:default", "telegram:default", "email:ops"]}},
    })
    (slack,) = route(1, "x", policy, {"slack:default", "telegram:default"})
    assert slack.failover == ("telegram:default",)  # itself and disabled email:ops left out


# ---------------------------------------------------------------- the routing file


def test_default_file_is_valid_and_has_no_secrets() -> None:
    text = default_policy_path().read_text("utf-8")
    doc = tomllib.loads(text)
    for conf in doc.get("destinations", {}).values():
        assert all(k.endswith("_env") for k in conf)
    assert DEFAULT.destinations["email:risk"] == {"to_env": "TOCSIN_EMAIL_RISK_TO"}


def test_receiver_defaults_inherit() -> None:
    policy = parse_policy({"receivers": {"default": {"max_attempts": 3, "backoff_s": [5]},
                                         "email:default": {"max_attempts": 7}}})
    assert policy.policy_for("webhook:x") == ReceiverPolicy(3, (5.0,), None)
    assert policy.policy_for("email:default").max_attempts == 7
    assert policy.policy_for("email:default").backoff_s == (5.0,)


def test_rate_limits_per_receiver() -> None:
    policy = parse_policy({"receivers": {"slack:default": {"rate_per_s": 0.5, "burst": 2}}})
    rp = policy.policy_for("slack:default")
    assert (rp.rate_per_s, rp.burst) == (0.5, 2)


BAD_DOCS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown top-level key", {"severities": {"1": ["webhook:default"]}}, "severities"),
    ("severity not a table", {"severity": ["webhook:default"]}, "severity"),
    ("severity out of range", {"severity": {"4": ["webhook:default"]}}, "severity.4"),
    ("severity not a number", {"severity": {"high": ["webhook:default"]}}, "severity.high"),
    ("destinations not a list", {"severity": {"1": "webhook:default"}}, "severity.1"),
    ("no channel:name", {"severity": {"1": ["webhook"]}}, "severity.1"),
    ("unknown channel", {"severity": {"2": ["pager:duty"]}}, "pager"),
    ("destination not text", {"always": [42]}, "always"),
    ("types not a table", {"types": ["email:risk"]}, "types"),
    ("bad type recipients", {"types": {"kill_switch_activated": ["sms:ops"]}}, "types.kill_switch_activated"),
    ("receivers not a table", {"receivers": ["webhook:default"]}, "receivers"),
    ("receiver not a table", {"receivers": {"webhook:default": 3}}, "receivers.webhook:default"),
    ("receiver bad name", {"receivers": {"webhook": {}}}, "receivers"),
    ("unknown receiver key", {"receivers": {"default": {"max_attempt": 3}}}, "receivers.default"),
    ("max_attempts zero", {"receivers": {"default": {"max_attempts": 0}}}, "receivers.default.max_attempts"),
    ("max_attempts text", {"receivers": {"email:default": {"max_attempts": "5"}}},
     "receivers.email:default.max_attempts"),
    ("max_attempts bool", {"receivers": {"default": {"max_attempts": True}}}, "receivers.default.max_attempts"),
    ("backoff empty", {"receivers": {"default": {"backoff_s": []}}}, "receivers.default.backoff_s"),
    ("backoff negative", {"receivers": {"default": {"backoff_s": [1, -2]}}}, "receivers.default.backoff_s"),
    ("backoff text", {"receivers": {"default": {"backoff_s": "1,2"}}}, "receivers.default.backoff_s"),
    ("backoff a step over 30 days", {"receivers": {"default": {"backoff_s": [1, 3e6]}}}, "receivers.default.backoff_s"),
    ("backoff infinite", {"receivers": {"default": {"backoff_s": [float("inf")]}}}, "receivers.default.backoff_s"),
    ("slow backoff text", {"receivers": {"default": {"slow_backoff_s": "300"}}}, "receivers.default.slow_backoff_s"),
    ("slow backoff negative", {"receivers": {"webhook:default": {"slow_backoff_s": [300, -1]}}},
     "receivers.webhook:default.slow_backoff_s"),
    ("slow backoff bools", {"receivers": {"default": {"slow_backoff_s": [True]}}}, "receivers.default.slow_backoff_s"),
    ("schedule too long", {"receivers": {"default": {"slow_backoff_s": [60] * 99}}}, "receivers.default.backoff_s"),
    ("max_age zero", {"receivers": {"default": {"max_age_s": 0}}}, "receivers.default.max_age_s"),
    ("max_age negative", {"receivers": {"webhook:default": {"max_age_s": -5}}}, "receivers.webhook:default.max_age_s"),
    ("max_age text", {"receivers": {"default": {"max_age_s": "2d"}}}, "receivers.default.max_age_s"),
    ("max_age over 30 days", {"receivers": {"default": {"max_age_s": 31 * 86400}}}, "receivers.default.max_age_s"),
    ("max_age nan", {"receivers": {"default": {"max_age_s": float("nan")}}}, "receivers.default.max_age_s"),
    ("breaker failures zero", {"receivers": {"default": {"breaker_failures": 0}}}, "receivers.default.breaker_failures"),
    ("breaker failures float", {"receivers": {"default": {"breaker_failures": 2.5}}},
     "receivers.default.breaker_failures"),
    ("breaker reset zero", {"receivers": {"default": {"breaker_reset_s": 0}}}, "receivers.default.breaker_reset_s"),
    ("breaker reset text", {"receivers": {"default": {"breaker_reset_s": "30s"}}}, "receivers.default.breaker_reset_s"),
    ("breaker max below reset", {"receivers": {"default": {"breaker_reset_s": 60, "breaker_max_reset_s": 30}}},
     "receivers.default.breaker_max_reset_s"),
    ("breaker max over a day", {"receivers": {"default": {"breaker_max_reset_s": 90000}}},
     "receivers.default.breaker_max_reset_s"),
    ("failover a string", {"receivers": {"webhook:default": {"failover": "email:default"}}},
     "receivers.webhook:default.failover"),
    ("failover unknown channel", {"receivers": {"webhook:default": {"failover": ["fax:x"]}}},
     "receivers.webhook:default.failover"),
    ("rate text", {"receivers": {"slack:default": {"rate_per_s": "fast"}}}, "receivers.slack:default.rate_per_s"),
    ("rate zero", {"receivers": {"slack:default": {"rate_per_s": 0}}}, "receivers.slack:default.rate_per_s"),
    ("burst zero", {"receivers": {"slack:default": {"burst": 0}}}, "receivers.slack:default.burst"),
    ("burst text", {"receivers": {"slack:default": {"burst": "2"}}}, "receivers.slack:default.burst"),
    ("destinations not a table", {"destinations": ["email:risk"]}, "destinations"),
    ("destination bad name", {"destinations": {"risk": {"to_env": "X"}}}, "destinations"),
    ("destination not a table", {"destinations": {"email:risk": "X"}}, "destinations.email:risk"),
    ("destination env not text", {"destinations": {"email:risk": {"to_env": 1}}}, "destinations.email:risk"),
    ("always not a list", {"always": "console:default"}, "always"),
]


@pytest.mark.parametrize(("doc", "key"), [(d, k) for _, d, k in BAD_DOCS], ids=[n for n, _, _ in BAD_DOCS])
def test_validation_errors_name_the_key(doc: dict[str, Any], key: str) -> None:
    with pytest.raises(RoutingError) as info:
        parse_policy(doc)
    assert isinstance(info.value, ConfigError)
    assert info.value.setting == "TOCSIN_ROUTING_FILE"
    assert key in str(info.value)


@pytest.mark.parametrize(
    ("conf", "key"),
    [
        ({"url": "https://hooks.example.com/T/B/secret"}, "url"),
        ({"to_env": "TOCSIN_X", "password": "hunter22"}, "password"),
        ({"token": "123:abc"}, "token"),
        ({"secret": "s3cr3t"}, "secret"),
    ],
)
def test_inline_secrets_are_refused(conf: dict[str, str], key: str) -> None:
    with pytest.raises(RoutingError) as info:
        parse_policy({"destinations": {"webhook:ops": conf}})
    message = str(info.value)
    assert key in message and "_env" in message
    for value in conf.values():
        if not value.startswith("TOCSIN_"):
            assert value not in message  # the refused secret is not repeated in the error


def test_load_policy_errors(tmp_path: Path) -> None:
    with pytest.raises(RoutingError, match="no such file"):
        load_policy(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[severity\n1 = 2")
    with pytest.raises(RoutingError) as info:
        load_policy(bad)
    assert info.value.setting == "TOCSIN_ROUTING_FILE"
    good = tmp_path / "good.toml"
    good.write_text('always = ["console:default"]\n[severity]\n1 = ["slack:default"]\n')
    assert load_policy(good).by_severity == {1: ("slack:default",)}


# ---------------------------------------------------------------- properties

names = st.sampled_from(["console:default", "file:default", "webhook:default", "webhook:ops",
                         "email:default", "email:risk", "slack:default", "telegram:default"])


@given(st.integers(1, 3), st.sampled_from(["daily_loss_limit", "kill_switch_activated", "x"]),
       st.sets(names), st.dictionaries(st.sampled_from(["1", "2", "3"]), st.lists(names, max_size=4)))
def test_route_properties(severity: int, type_: str, enabled: set[str], sev_doc: dict[str, list[str]]) -> None:
    policy = parse_policy({"severity": sev_doc, "types": {"daily_loss_limit": ["email:risk"]}})
    routes = route(severity, type_, policy, enabled)
    got = [r.destination for r in routes]
    assert got, "something always gets the alert (the console at least)"
    assert len(got) == len(set(got))
    assert set(got) <= enabled | {"console:default"}
    for r in routes:
        assert r.destination not in r.failover
        assert set(r.failover) <= enabled | {"console:default"}
    assert route(severity, type_, policy, enabled) == routes  # pure


retry_values = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**7), st.floats(), st.text(max_size=4),
                         st.lists(st.one_of(st.integers(-5, 10**7), st.floats(), st.booleans()), max_size=5))


@given(st.fixed_dictionaries({}, optional={k: retry_values for k in (
    "max_attempts", "backoff_s", "slow_backoff_s", "max_age_s", "breaker_failures", "breaker_reset_s",
    "breaker_max_reset_s")}))
def test_any_retry_settings_are_a_valid_policy_or_a_named_error(settings: dict[str, Any]) -> None:
    doc = {"receivers": {"webhook:default": {k: v for k, v in settings.items() if v is not None}}}
    try:
        rp = parse_policy(doc).policy_for("webhook:default")
    except RoutingError as exc:
        assert "receivers.webhook:default" in str(exc)
        return
    assert rp.backoff_s and 1 <= rp.max_attempts <= 100
    assert all(0 <= s <= 30 * 86400 for s in rp.schedule)
    assert 0 < rp.max_age_s <= 30 * 86400
    assert 1 <= rp.breaker_failures and 0 < rp.breaker_reset_s <= rp.breaker_max_reset_s <= 86400
