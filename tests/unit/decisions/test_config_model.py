"""decisions.config_model: a configuration file's errors as one line naming the key and what is
expected there (through the routing file's model, decisions/routing.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tocsin.decisions.config_model import path
from tocsin.decisions.routing import RECEIVER_KEYS, TOP_LEVEL_KEYS, parse_policy
from tocsin.errors import RoutingError


@pytest.mark.parametrize(("loc", "shown"), [
    ((), ""),
    (("always", 0), "always[0]"),
    (("receivers", "webhook:default", "failover", 1), "receivers.webhook:default.failover[1]"),
    (("severity", " 2"), 'severity." 2"'),
    (("types", "", 0), 'types.""[0]'),
    (("types", "a\nb"), 'types."a\\nb"'),
    (("severity", "+1"), "severity.+1"),
])
def test_path(loc: tuple[int | str, ...], shown: str) -> None:
    assert path(loc) == shown


def message(doc: Any) -> str:
    with pytest.raises(RoutingError) as info:
        parse_policy(doc)
    return str(info.value)


@pytest.mark.parametrize(("doc", "wanted"), [
    ({"severities": {}}, f"TOCSIN_ROUTING_FILE: severities: unknown key (known: {', '.join(TOP_LEVEL_KEYS)})"),
    ({"receivers": {"default": {"max_attempt": 3}}},
     f"receivers.default.max_attempt: unknown key (known: {', '.join(RECEIVER_KEYS)})"),
    ({"receivers": {"default": {"backoff_s": [1, -2]}}},
     "receivers.default.backoff_s[1]: the fast retries: a non-empty list of seconds, each 0..2592000 (30 days)"),
    ({"receivers": {"default": {"max_age_s": "2d"}}},
     "receivers.default.max_age_s: seconds, a number > 0 and <= 2592000 (30 days)"),
    ({"receivers": {"webhook:default": 3}}, "receivers.webhook:default: expected a table"),
    ({"receivers": {"webhook": {}}}, "receivers.webhook: destination 'webhook' is not channel:name"),
    ({"always": ["console:default", "pager:duty"]}, "always[1]: unknown channel 'pager' in 'pager:duty'"),
    ({"severity": {"4": []}}, "severity.4: not 1, 2 or 3"),
    ({"severity": {"1": "webhook:default"}}, "severity.1: expected a list of destinations"),
    ({"destinations": {"email:risk": {"to_env": ""}}},
     "destinations.email:risk.to_env: each *_env value names an environment variable"),
    ({"receivers": {"default": {"breaker_reset_s": 60, "breaker_max_reset_s": 30}}},
     "receivers.default.breaker_max_reset_s: the longest open period, at least breaker_reset_s (60)"),
    ({"receivers": {"email:risk": {"allow_mentions": True}}},
     "receivers.email:risk.allow_mentions: only for slack and telegram destinations"),
    ({"ingest": {"alertmanager": {"entity": {"venue": "x"}}}},
     "ingest.alertmanager.entity.venue: not an entity field (account_id, symbol, strategy_id, run_id)"),
    ({"ingest": []}, "ingest: expected a table"),
])
def test_the_error_names_the_key_and_what_is_expected(doc: dict[str, Any], wanted: str) -> None:
    assert wanted in message(doc)


def test_an_unknown_key_is_said_first_and_the_others_counted() -> None:
    got = message({"severity": {"9": []}, "always": "x", "bogus": 1})
    assert got.startswith("TOCSIN_ROUTING_FILE: bogus: unknown key") and got.endswith("(and 2 more errors)")


def test_a_refused_value_is_never_repeated() -> None:
    got = message({"receivers": {"default": {"max_age_s": "hunter22"}},
                   "destinations": {"webhook:ops": {"url_env": 123456789}}})
    assert "hunter22" not in got and "123456789" not in got
