"""Routing: which destinations a notified alert goes to, with each receiver's delivery
policy and failover chain. Pure over plain values; the policy is loaded from TOML."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RoutingError
from .alertmanager import DEFAULT_MAPPING, AlertmanagerMapping, parse_mapping
from .retry import DEFAULT_BACKOFF_S, DEFAULT_MAX_AGE_S, DEFAULT_SLOW_BACKOFF_S

CHANNELS = ("console", "file", "webhook", "email", "slack", "telegram", "pagerduty")
DEFAULT_FAILOVER_ORDER = ("webhook", "email", "console")


@dataclass(frozen=True)
class ReceiverPolicy:
    """A receiver's delivery policy (routing file ``[receivers."channel:name"]``).

    Retries: the fast tier ``backoff_s``, then the slow tier ``slow_backoff_s``; a command is
    dead when the schedule is spent (``max_attempts`` contacts: the routing file's, kept in
    ``max_attempts_set``, or one per step plus the first) or ``max_age_s`` after it was made,
    whichever comes first. The destination's
    circuit breaker opens after ``breaker_failures`` consecutive failures for
    ``breaker_reset_s``, twice that after each failed probe, up to ``breaker_max_reset_s``.
    """

    max_attempts_set: int | None = None  # None: 1 + len(schedule)
    backoff_s: tuple[float, ...] = DEFAULT_BACKOFF_S
    failover: tuple[str, ...] | None = None  # None: the default chain
    rate_per_s: float | None = None
    burst: int | None = None
    #: a Slack/Telegram destination whose alerts' mentions (``<!channel>``, ``@user``) stay live
    allow_mentions: bool = False
    slow_backoff_s: tuple[float, ...] = DEFAULT_SLOW_BACKOFF_S
    max_age_s: float = DEFAULT_MAX_AGE_S
    breaker_failures: int = 5
    breaker_reset_s: float = 30.0
    breaker_max_reset_s: float = 300.0

    @property
    def schedule(self) -> tuple[float, ...]:
        """The delays between contacts: the fast tier, then the slow one."""
        return self.backoff_s + self.slow_backoff_s

    @property
    def max_attempts(self) -> int:
        """How many contacts before the command is dead."""
        return self.max_attempts_set if self.max_attempts_set is not None else 1 + len(self.schedule)


#: the channels whose messages can mention people (``allow_mentions``)
MENTION_CHANNELS = ("slack", "telegram")


@dataclass(frozen=True)
class RoutingPolicy:
    by_severity: Mapping[int, tuple[str, ...]]
    by_type: Mapping[str, tuple[str, ...]]
    always: tuple[str, ...] = ()
    receivers: Mapping[str, ReceiverPolicy] = field(default_factory=dict)
    default_receiver: ReceiverPolicy = ReceiverPolicy()
    destinations: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    #: how Alertmanager alerts become events (``[ingest.alertmanager]``: decisions/alertmanager.py)
    alertmanager: AlertmanagerMapping = DEFAULT_MAPPING

    def policy_for(self, receiver: str) -> ReceiverPolicy:
        return self.receivers.get(receiver, self.default_receiver)


@dataclass(frozen=True, slots=True)
class Route:
    receiver: str
    destination: str
    max_attempts: int
    backoff_s: tuple[float, ...]  # the whole schedule: the fast tier, then the slow one
    failover: tuple[str, ...]


def _check_destination(name: Any, where: str) -> str:
    if not isinstance(name, str) or ":" not in name:
        raise RoutingError("TOCSIN_ROUTING_FILE", f"{where}: destination {name!r} is not channel:name")
    channel = name.split(":", 1)[0]
    if channel not in CHANNELS:
        raise RoutingError("TOCSIN_ROUTING_FILE", f"{where}: unknown channel {channel!r} in {name!r}")
    return name


def _dests(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise RoutingError("TOCSIN_ROUTING_FILE", f"{where}: expected a list of destinations")
    return tuple(_check_destination(v, where) for v in value)


def _fail(where: str, message: str) -> RoutingError:
    return RoutingError("TOCSIN_ROUTING_FILE", f"{where}: {message}")


def _table(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, Mapping):
        raise _fail(key, "expected a table")
    return value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


#: the longest a delivery may be tried (``max_age_s``) and the longest step of a schedule
MAX_AGE_LIMIT_S = 30 * 86400.0
RECEIVER_KEYS = ("max_attempts", "backoff_s", "slow_backoff_s", "max_age_s", "failover", "rate_per_s", "burst",
                 "allow_mentions", "breaker_failures", "breaker_reset_s", "breaker_max_reset_s")


def _seconds_list(value: Any, where: str, what: str, empty_ok: bool) -> tuple[float, ...]:
    if (not isinstance(value, list | tuple) or (not value and not empty_ok)
            or not all(_number(b) and 0 <= b <= MAX_AGE_LIMIT_S for b in value)):
        raise _fail(where, f"{what}: a {'' if empty_ok else 'non-empty '}list of seconds, each 0..{MAX_AGE_LIMIT_S:g}")
    return tuple(float(b) for b in value)


def _seconds(value: Any, where: str, low: float, high: float = MAX_AGE_LIMIT_S, *, open_low: bool = False) -> float:
    if not _number(value) or not (value > low if open_low else value >= low) or value > high:
        raise _fail(where, f"seconds, a number {'>' if open_low else '>='} {low:g} and <= {high:g}")
    return float(value)


def _receiver(data: Any, where: str, base: ReceiverPolicy) -> ReceiverPolicy:
    if not isinstance(data, Mapping):
        raise _fail(where, "expected a table")
    known = set(RECEIVER_KEYS)
    unknown = set(data) - known
    if unknown:
        raise _fail(where, f"unknown keys {sorted(unknown)} (known: {', '.join(RECEIVER_KEYS)})")
    max_attempts = data.get("max_attempts", base.max_attempts_set)
    if max_attempts is not None and (isinstance(max_attempts, bool) or not isinstance(max_attempts, int)
                                     or not 1 <= max_attempts <= 100):
        raise _fail(f"{where}.max_attempts", "must be a whole number 1..100 (or left out: one per step of "
                                             "backoff_s and slow_backoff_s, plus the first)")
    backoff = _seconds_list(data.get("backoff_s", base.backoff_s), f"{where}.backoff_s",
                            "the fast retries", empty_ok=False)
    slow = _seconds_list(data.get("slow_backoff_s", base.slow_backoff_s), f"{where}.slow_backoff_s",
                         "the slow retries, after backoff_s", empty_ok=True)
    if max_attempts is None and 1 + len(backoff) + len(slow) > 100:
        raise _fail(f"{where}.backoff_s", "backoff_s and slow_backoff_s: at most 99 steps together")
    max_age = _seconds(data.get("max_age_s", base.max_age_s), f"{where}.max_age_s", 0.0, open_low=True)
    failures = data.get("breaker_failures", base.breaker_failures)
    if isinstance(failures, bool) or not isinstance(failures, int) or not 1 <= failures <= 1000:
        raise _fail(f"{where}.breaker_failures", "consecutive failures that open the breaker, a whole number 1..1000")
    reset = _seconds(data.get("breaker_reset_s", base.breaker_reset_s), f"{where}.breaker_reset_s", 0.0,
                     open_low=True, high=86400.0)
    max_reset = data.get("breaker_max_reset_s", base.breaker_max_reset_s)
    if "breaker_reset_s" in data and "breaker_max_reset_s" not in data:
        max_reset = max(reset, max_reset)  # a longer reset alone: the cap follows it
    if _number(max_reset) and max_reset < reset:
        raise _fail(f"{where}.breaker_max_reset_s", f"the longest open period, at least breaker_reset_s ({reset:g})")
    max_reset = _seconds(max_reset, f"{where}.breaker_max_reset_s", reset, high=86400.0)
    failover = data.get("failover", base.failover)
    if "failover" in data:
        failover = _dests(data["failover"], f"{where}.failover")
    rate = data.get("rate_per_s", base.rate_per_s)
    if rate is not None and not (_number(rate) and rate > 0):
        raise _fail(f"{where}.rate_per_s", "messages per second, a number > 0")
    burst = data.get("burst", base.burst)
    if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or burst < 1):
        raise _fail(f"{where}.burst", "a whole number >= 1")
    allow_mentions = data.get("allow_mentions", base.allow_mentions)
    if not isinstance(allow_mentions, bool):
        raise _fail(f"{where}.allow_mentions", "true or false")
    return ReceiverPolicy(max_attempts_set=max_attempts, backoff_s=backoff, failover=failover,
                          rate_per_s=None if rate is None else float(rate), burst=burst,
                          allow_mentions=allow_mentions, slow_backoff_s=slow, max_age_s=max_age,
                          breaker_failures=failures, breaker_reset_s=reset, breaker_max_reset_s=max_reset)


TOP_LEVEL_KEYS = ("always", "severity", "types", "receivers", "destinations", "ingest")


def parse_policy(doc: Mapping[str, Any]) -> RoutingPolicy:
    """Validate a routing document (the parsed TOML); errors name the offending key."""
    unknown = sorted(set(doc) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise _fail(unknown[0], f"unknown key (known: {', '.join(TOP_LEVEL_KEYS)})")
    by_severity: dict[int, tuple[str, ...]] = {}
    for k, v in _table(doc, "severity").items():
        try:
            sev = int(k)
        except ValueError:
            raise _fail(f"severity.{k}", "not 1, 2 or 3") from None
        if sev not in (1, 2, 3):
            raise _fail(f"severity.{k}", "not 1, 2 or 3")
        by_severity[sev] = _dests(v, f"severity.{k}")
    by_type = {str(t): _dests(v, f"types.{t}") for t, v in _table(doc, "types").items()}
    always = _dests(doc.get("always", []), "always")
    receivers_doc = dict(_table(doc, "receivers"))
    default = _receiver(receivers_doc.pop("default", {}), "receivers.default", ReceiverPolicy())
    receivers = {
        _check_destination(name, "receivers"): _receiver(v, f"receivers.{name}", default)
        for name, v in receivers_doc.items()
    }
    for name, v in receivers_doc.items():
        if "allow_mentions" in v and name.split(":", 1)[0] not in MENTION_CHANNELS:
            raise _fail(f"receivers.{name}.allow_mentions", f"only for {' and '.join(MENTION_CHANNELS)} destinations")
    destinations: dict[str, dict[str, str]] = {}
    for name, v in _table(doc, "destinations").items():
        _check_destination(name, "destinations")
        if not isinstance(v, Mapping):
            raise _fail(f"destinations.{name}", "a table of *_env names")
        bad = [k for k in v if not k.endswith("_env")]
        if bad:
            raise _fail(
                f"destinations.{name}.{bad[0]}",
                "settings are named by environment variable (keys ending in _env), never inline",
            )
        if not all(isinstance(x, str) and x for x in v.values()):
            raise _fail(f"destinations.{name}", "each *_env value names an environment variable")
        destinations[name] = dict(v)
    ingest = _table(doc, "ingest")
    if set(ingest) - {"alertmanager"}:
        raise _fail(f"ingest.{sorted(set(ingest) - {'alertmanager'})[0]}", "unknown key (known: alertmanager)")
    mapping = parse_mapping(ingest["alertmanager"]) if "alertmanager" in ingest else DEFAULT_MAPPING
    return RoutingPolicy(by_severity, by_type, always, receivers, default, destinations, mapping)


def default_policy_path() -> Path:
    return Path(__file__).resolve().parent.parent / "routing.default.toml"


def load_policy(path: Path | None) -> RoutingPolicy:
    p = path or default_policy_path()
    try:
        doc = tomllib.loads(p.read_text("utf-8"))
    except FileNotFoundError:
        raise RoutingError("TOCSIN_ROUTING_FILE", f"no such file: {p}") from None
    except OSError as exc:  # a directory, no permission
        raise RoutingError("TOCSIN_ROUTING_FILE", f"cannot read {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise RoutingError("TOCSIN_ROUTING_FILE", f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise RoutingError("TOCSIN_ROUTING_FILE", f"{p}: {exc}") from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise RoutingError("TOCSIN_ROUTING_FILE", f"{p}: arrays or tables nested too deeply") from None
    return parse_policy(doc)


def default_failover(destination: str) -> tuple[str, ...]:
    channel = destination.split(":", 1)[0]
    if channel in ("console", "file"):
        return ()
    order = DEFAULT_FAILOVER_ORDER
    start = order.index(channel) + 1 if channel in order else 1
    return tuple(f"{c}:default" for c in order[start:])


def route(
    severity: int,
    alert_type: str,
    policy: RoutingPolicy,
    enabled: Iterable[str],
) -> list[Route]:
    """The destinations of a notified alert, in order, without repeats.

    Disabled destinations are skipped (and left out of failover chains); if nothing
    enabled remains, the alert goes to the console, which is always on.
    """
    enabled_set = set(enabled) | {"console:default"}
    wanted: list[str] = []
    for name in (*policy.by_severity.get(severity, ()), *policy.by_type.get(alert_type, ()), *policy.always):
        if name in enabled_set and name not in wanted:
            wanted.append(name)
    if not wanted:
        wanted.append("console:default")
    routes = []
    for name in wanted:
        rp = policy.policy_for(name)
        chain = rp.failover if rp.failover is not None else default_failover(name)
        failover = tuple(d for d in chain if d in enabled_set and d != name)
        routes.append(Route(name, name, rp.max_attempts, rp.schedule, failover))
    return routes
