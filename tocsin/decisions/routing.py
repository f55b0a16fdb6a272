"""Routing: which destinations a notified alert goes to, with each receiver's delivery
policy and failover chain. Pure over plain values; the policy is loaded from TOML."""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, Field, Strict, ValidationError

from ..errors import RoutingError
from ..schemas.silence import SilenceMatcher
from .alertmanager import DEFAULT_MAPPING, AlertmanagerMapping, MappingFile
from .config_model import Loc, Table, describe, explain, invalid, path
from .escalation import EscalationPolicy, Step
from .flapping import OFF as FLAP_OFF
from .flapping import FlapFile, FlapSettings
from .grouping import LABELS as GROUP_LABELS
from .grouping import GroupRule
from .inhibit import SOURCE_TIMEOUT_S, InhibitRule
from .maintenance import NO_MAINTENANCE, MaintenanceFile, MaintenancePolicy, maintenance_policy
from .preferences import Preferences, QuietHours, Recipient, Rule, Version, zone
from .preferences import apply as apply_preferences
from .retry import DEFAULT_BACKOFF_S, DEFAULT_MAX_AGE_S, DEFAULT_SLOW_BACKOFF_S
from .silence import InvalidSilence, parse_matcher
from .timeinterval import NamedIntervalFile, named_intervals
from .windows import DEFAULT_WINDOWS, DigestsFile, ThrottleFile, WindowPolicy, window_policy

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
    #: people and teams with their preferences (``[recipients.<name>]``: decisions/preferences.py)
    recipients: tuple[Recipient, ...] = ()
    #: recurring maintenance windows (``[[time_intervals]]``, ``[[maintenance]]``: decisions/maintenance.py)
    maintenance: MaintenancePolicy = NO_MAINTENANCE
    #: per-type throttle windows and digests (``[throttle]``, ``[digests]``: decisions/windows.py)
    windows: WindowPolicy = DEFAULT_WINDOWS
    #: ``[[inhibit_rules]]``, in file order (decisions/inhibit.py)
    inhibit_rules: tuple[InhibitRule, ...] = ()
    #: escalation policies, in the file's order (``[escalations.<name>]``: decisions/escalation.py)
    escalations: tuple[EscalationPolicy, ...] = ()
    #: the ``[[groups]]`` rules, in order: the first selecting an alert groups it (decisions/grouping.py)
    groups: tuple[GroupRule, ...] = ()
    #: flap detection (``[flapping]``: decisions/flapping.py); off by default
    flapping: FlapSettings = FLAP_OFF

    def policy_for(self, receiver: str) -> ReceiverPolicy:
        return self.receivers.get(receiver, self.default_receiver)


@dataclass(frozen=True, slots=True)
class Route:
    receiver: str
    destination: str
    max_attempts: int
    backoff_s: tuple[float, ...]  # the whole schedule: the fast tier, then the slow one
    failover: tuple[str, ...]


# ---------------------------------------------------------------- the routing file, as a model

_FILE = "TOCSIN_ROUTING_FILE"
#: the longest a delivery may be tried (``max_age_s``) and the longest step of a schedule
MAX_AGE_LIMIT_S = 30 * 86400.0
#: the longest open period of a circuit breaker
MAX_RESET_S = 86400.0
_SECONDS = f"seconds, each 0..{MAX_AGE_LIMIT_S:.0f} (30 days)"


def _destination(name: Any) -> str:
    if not isinstance(name, str) or ":" not in name:
        raise invalid("destination {name} is not channel:name", name=repr(name))
    channel = name.split(":", 1)[0]
    if channel not in CHANNELS:
        raise invalid("unknown channel {channel} in {name}", channel=repr(channel), name=repr(name))
    return name


def _severity(key: Any) -> int:
    try:
        sev = int(key)
    except (TypeError, ValueError):
        raise invalid("not 1, 2 or 3") from None
    if sev not in (1, 2, 3):
        raise invalid("not 1, 2 or 3")
    return sev


def _receiver_name(name: Any) -> str:
    return name if name == "default" else _destination(name)


def _env_key(key: Any) -> str:
    if not isinstance(key, str) or not key.endswith("_env"):
        raise invalid("settings are named by environment variable (keys ending in _env), never inline")
    return key


Destination = Annotated[str, BeforeValidator(_destination)]
Destinations = Annotated[tuple[Destination, ...], Field(description="expected a list of destinations")]
Seconds = Annotated[float, Strict(), Field(ge=0, le=MAX_AGE_LIMIT_S, allow_inf_nan=False)]
EnvName = Annotated[str, Strict(), Field(min_length=1, description="each *_env value names an environment variable")]


_BUILT_IN = ReceiverPolicy()


class ReceiverFile(Table):
    """``[receivers."channel:name"]`` (or ``[receivers.default]``): what it sets of ``ReceiverPolicy``
    (the defaults shown are the built-in ones; a named receiver inherits the default's)."""

    max_attempts: Annotated[int, Strict()] | None = Field(
        default=None, ge=1, le=100, description="a whole number 1..100 (or left out: one per step of backoff_s and "
                                                "slow_backoff_s, plus the first)")
    backoff_s: tuple[Seconds, ...] = Field(default=_BUILT_IN.backoff_s, min_length=1,
                                           description=f"the fast retries: a non-empty list of {_SECONDS}")
    slow_backoff_s: tuple[Seconds, ...] = Field(default=_BUILT_IN.slow_backoff_s,
                                                description=f"the slow retries, after backoff_s: a list of {_SECONDS}")
    max_age_s: Annotated[float, Strict()] = Field(
        default=_BUILT_IN.max_age_s, gt=0, le=MAX_AGE_LIMIT_S, allow_inf_nan=False,
        description=f"seconds, a number > 0 and <= {MAX_AGE_LIMIT_S:.0f} (30 days)")
    failover: Destinations | None = None  # None: the default chain
    rate_per_s: Annotated[float, Strict()] | None = Field(default=None, gt=0, allow_inf_nan=False,
                                                          description="messages per second, a number > 0")
    burst: Annotated[int, Strict()] | None = Field(default=None, ge=1, description="a whole number >= 1")
    allow_mentions: Annotated[bool, Strict()] = Field(default=_BUILT_IN.allow_mentions, description="true or false")
    breaker_failures: Annotated[int, Strict()] = Field(
        default=_BUILT_IN.breaker_failures, ge=1, le=1000,
        description="consecutive failures that open the breaker, a whole number 1..1000")
    breaker_reset_s: Annotated[float, Strict()] = Field(
        default=_BUILT_IN.breaker_reset_s, gt=0, le=MAX_RESET_S, allow_inf_nan=False,
        description=f"seconds, a number > 0 and <= {MAX_RESET_S:.0f}")
    breaker_max_reset_s: Annotated[float, Strict()] = Field(
        default=_BUILT_IN.breaker_max_reset_s, gt=0, le=MAX_RESET_S, allow_inf_nan=False,
        description=f"the longest open period: seconds, a number > 0 and <= {MAX_RESET_S:.0f}, "
                    "at least breaker_reset_s")


class IngestFile(Table):
    """``[ingest]``: how the ways in map what they are given."""

    alertmanager: MappingFile | None = Field(default=None, description="expected a table")


# ---------------------------------------------------------- recipients' preferences (preferences.py)


def _hh_mm(value: Any) -> dt.time:
    if isinstance(value, dt.time):
        return value
    if not isinstance(value, str) or not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise invalid("a local time as \"HH:MM\" (00:00..23:59)")
    return dt.time(int(value[:2]), int(value[3:]))


def _time_zone(name: Any) -> str:
    if not isinstance(name, str) or not name or name.startswith(("/", ".")) or ".." in name:
        raise invalid("an IANA time zone name, such as \"Europe/Berlin\" or \"UTC\"")
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid("an IANA time zone name, such as \"Europe/Berlin\" or \"UTC\"") from None
    return name


def _channel(name: Any) -> str:
    if name not in CHANNELS:
        raise invalid("a channel: {known}", known=", ".join(CHANNELS))
    return str(name)


LocalTime = Annotated[dt.time, BeforeValidator(_hh_mm)]


class RuleFile(Table):
    """An ``opt_in`` or ``opt_out`` rule (preferences.Rule)."""

    severities: tuple[Annotated[int, BeforeValidator(_severity)], ...] = Field(
        default=(), description="a list of severities, each 1, 2 or 3")
    types: tuple[Annotated[str, Strict(), Field(min_length=1, max_length=64)], ...] = Field(
        default=(), description="a list of alert types")
    channels: tuple[Annotated[str, BeforeValidator(_channel)], ...] = Field(
        default=(), description=f"a list of channels, each one of {', '.join(CHANNELS)}")
    destinations: Destinations = ()

    def rule(self) -> Rule:
        return Rule(frozenset(self.severities), frozenset(self.types), frozenset(self.channels), self.destinations)


class QuietHoursFile(Table):
    start: LocalTime
    end: LocalTime


class PreferencesFile(Table):
    """What a recipient prefers; the body of ``PUT /api/preferences/{name}`` too."""

    time_zone: Annotated[str, BeforeValidator(_time_zone)] = "UTC"
    quiet_hours: QuietHoursFile | None = Field(default=None, description="expected a table: start and end, \"HH:MM\"")
    opt_in: tuple[RuleFile, ...] = Field(default=(), description="expected a list of tables")
    opt_out: tuple[RuleFile, ...] = Field(default=(), description="expected a list of tables")

    def preferences(self) -> Preferences:
        q = self.quiet_hours
        return Preferences(self.time_zone, QuietHours(q.start, q.end) if q else None,
                           tuple(r.rule() for r in self.opt_in), tuple(r.rule() for r in self.opt_out))


class RecipientFile(PreferencesFile):
    """``[recipients.<name>]``: a person's or a team's destinations and preferences."""

    kind: Literal["person", "team"] = Field(default="person", description="\"person\" or \"team\"")
    destinations: Annotated[tuple[Destination, ...], Field(min_length=1, description="a non-empty list of destinations")]


def _recipient_name(name: Any) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", name):
        raise invalid("a recipient's name: letters, digits, _ . @ - (64 at most)")
    return name


RecipientName = Annotated[str, BeforeValidator(_recipient_name)]


def check_preferences(prefs: PreferencesFile, destinations: Iterable[str], where: Loc) -> RoutingError | None:
    """The checks of values together: an opt-in or opt-out names only the recipient's own
    destinations (an API caller never sends alerts anywhere the routing file does not say)."""
    own = set(destinations)
    for kind in ("opt_in", "opt_out"):
        for i, rule in enumerate(getattr(prefs, kind)):
            for j, d in enumerate(rule.destinations):
                if d not in own:
                    return _fail((*where, kind, i, "destinations", j),
                                 f"{d} is not one of this recipient's destinations ({', '.join(sorted(own))})")
            if kind == "opt_in" and not rule.destinations:
                return _fail((*where, kind, i, "destinations"), "an opt_in names the destinations it adds")
    return None


def _recipients(given: Mapping[str, RecipientFile]) -> tuple[Recipient, ...]:
    owner: dict[str, str] = {}
    out = []
    for name, r in given.items():
        where: Loc = ("recipients", name)
        for i, d in enumerate(r.destinations):
            if d in owner:
                raise _fail((*where, "destinations", i), f"{d} is already {owner[d]}'s: a destination has one owner")
            owner[d] = name
        if (err := check_preferences(r, r.destinations, where)) is not None:
            raise err
        out.append(Recipient(name, r.kind, r.destinations, r.preferences()))
    return tuple(out)
# ---------------------------------------------------------------- inhibit rules (decisions/inhibit.py)

_MATCHER_TEXT = "a matcher as amtool writes one: name=\"value\" (=, !=, =~ or !~)"


def _matcher(text: Any) -> SilenceMatcher:
    if not isinstance(text, str):
        raise invalid(_MATCHER_TEXT)
    try:
        return parse_matcher(text)
    except (ValueError, InvalidSilence) as exc:
        raise invalid("{why}; expected " + _MATCHER_TEXT, why=exc) from None


def _some(matchers: tuple[SilenceMatcher, ...]) -> tuple[SilenceMatcher, ...]:
    if not matchers:
        raise invalid("at least one matcher; each " + _MATCHER_TEXT)
    return matchers


Matchers = Annotated[tuple[Annotated[SilenceMatcher, BeforeValidator(_matcher)], ...], AfterValidator(_some),
                     Field(description=f"a list of matchers, each {_MATCHER_TEXT}")]


class InhibitRuleFile(Table):
    """``[[inhibit_rules]]``: a target alert is muted while a source alert with the same
    ``equal`` labels fires (Alertmanager's inhibit_rules)."""

    name: Annotated[str, Strict()] = Field(min_length=1, max_length=200,
                                           description="the rule's name (the decision's reason), 1..200 characters")
    source_matchers: Matchers
    target_matchers: Matchers
    equal: tuple[Annotated[str, Strict()], ...] = Field(default=(), description="a list of label names")
    source_timeout_s: float = Field(default=SOURCE_TIMEOUT_S, gt=0, le=365 * 86_400, description=(
        "seconds after a source's last firing event at which it stops inhibiting, 0 < s <= 1 year"))

    def rule(self) -> InhibitRule:
        return InhibitRule(self.name, self.source_matchers, self.target_matchers, self.equal, self.source_timeout_s)
# ---------------------------------------------------------------- escalations (decisions/escalation.py)


class EscalationStepFile(Table):
    """One step of ``[escalations.<name>]``: ``after_s`` after the notified alert, to ``to``."""

    after_s: Seconds = Field(description=f"seconds after the notification, 0..{MAX_AGE_LIMIT_S:.0f} (30 days)")
    to: Destinations = Field(min_length=1, description="expected a non-empty list of destinations")


class EscalationFile(Table):
    """``[escalations.<name>]``: which notified alerts it escalates (``severities``, ``types``),
    its steps (``[[escalations.<name>.steps]]``, ``after_s`` strictly increasing), how many more
    cycles (``repeat``, each ``repeat_after_s`` after the last step) and ``ack_timeout_s``."""

    steps: tuple[EscalationStepFile, ...] = Field(min_length=1, description="expected a non-empty list of steps")
    severities: tuple[Annotated[int, BeforeValidator(_severity)], ...] = Field(
        default=(), description="expected a list of severities (1, 2 or 3)")
    types: tuple[Annotated[str, Strict()], ...] = Field(default=(), description="expected a list of alert types")
    repeat: Annotated[int, Strict()] = Field(default=0, ge=0, le=100, description="a whole number 0..100")
    repeat_after_s: Annotated[float, Strict()] = Field(
        default=300.0, gt=0, le=MAX_AGE_LIMIT_S, allow_inf_nan=False,
        description=f"seconds, a number > 0 and <= {MAX_AGE_LIMIT_S:.0f} (30 days)")
    ack_timeout_s: Annotated[float, Strict()] | None = Field(
        default=None, gt=0, le=MAX_AGE_LIMIT_S, allow_inf_nan=False,
        description=f"seconds, a number > 0 and <= {MAX_AGE_LIMIT_S:.0f} (30 days)")


def _escalation(name: str, e: EscalationFile) -> EscalationPolicy:
    where: Loc = ("escalations", name)
    if not e.severities and not e.types:
        raise _fail(where, "names no alerts: give severities or types (or both)")
    for i in range(1, len(e.steps)):
        if e.steps[i].after_s <= e.steps[i - 1].after_s:
            raise _fail((*where, "steps", i, "after_s"), "after_s of each step must be greater than the one before")
    return EscalationPolicy(name, tuple(Step(s.after_s, s.to) for s in e.steps), frozenset(e.severities),
                            frozenset(e.types), e.repeat, e.repeat_after_s, e.ack_timeout_s)


# ----------------------------------------------------------------------------------------------

# -- grouping (#18 item 2): ``[[groups]]``, decisions/grouping.py ----------------------------

_GROUP_DEFAULT = GroupRule("default")


def _group_label(label: Any) -> str:
    if not isinstance(label, str) or not (label in GROUP_LABELS or (label.startswith("details.") and len(label) > 8)):
        raise invalid("a label is one of {known} or details.<key>", known=", ".join(GROUP_LABELS))
    return label


GroupSeconds = Annotated[float, Strict(), Field(gt=0, le=MAX_AGE_LIMIT_S, allow_inf_nan=False,
                                                description=f"seconds, a number > 0 and <= {MAX_AGE_LIMIT_S:.0f}")]


class GroupFile(Table):
    """``[[groups]]``: the alerts one rule groups and when their groups notify."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$", description="a name of 1..64 letters, digits, _.:-")
    types: tuple[Annotated[str, Strict()], ...] = Field(default=(), description="a list of alert types (empty: any)")
    severities: tuple[Annotated[int, BeforeValidator(_severity)], ...] = Field(
        default=(), description="a list of severities 1, 2 or 3 (empty: any)")
    group_by: tuple[Annotated[str, BeforeValidator(_group_label)], ...] = Field(
        default=_GROUP_DEFAULT.group_by, min_length=1, description="a non-empty list of labels")
    group_wait_s: GroupSeconds = _GROUP_DEFAULT.group_wait_s
    group_interval_s: GroupSeconds = _GROUP_DEFAULT.group_interval_s
    repeat_interval_s: GroupSeconds = _GROUP_DEFAULT.repeat_interval_s
    resolve_timeout_s: GroupSeconds = _GROUP_DEFAULT.resolve_timeout_s
    list_max: Annotated[int, Strict()] = Field(default=_GROUP_DEFAULT.list_max, ge=1, le=100,
                                               description="a whole number 1..100")

    def rule(self) -> GroupRule:
        return GroupRule(self.name, self.types, self.severities, self.group_by, self.group_wait_s,
                         self.group_interval_s, self.repeat_interval_s, self.resolve_timeout_s, self.list_max)


def _group_rules(groups: tuple[GroupFile, ...]) -> tuple[GroupRule, ...]:
    seen: set[str] = set()
    for i, g in enumerate(groups):
        if g.name in seen:
            raise _fail(("groups", i, "name"), f"a second group named {g.name!r}: names are unique")
        seen.add(g.name)
    return tuple(g.rule() for g in groups)



class RoutingFile(Table):
    """The routing file (``TOCSIN_ROUTING_FILE``); every table defaults to empty."""

    always: Destinations = ()
    severity: dict[Annotated[int, BeforeValidator(_severity)], Destinations] = Field(
        default_factory=dict, description="expected a table of severity (1, 2 or 3) = list of destinations")
    types: dict[Annotated[str, BeforeValidator(str)], Destinations] = Field(
        default_factory=dict, description="expected a table of alert type = list of destinations")
    receivers: dict[Annotated[str, BeforeValidator(_receiver_name)],
                    Annotated[ReceiverFile, Field(description="expected a table")]] = Field(
        default_factory=dict, description="expected a table of receiver (default or channel:name) = its policy")
    destinations: dict[Destination, Annotated[dict[Annotated[str, BeforeValidator(_env_key)], EnvName],
                                              Field(description="a table of *_env names")]] = Field(
        default_factory=dict, description="expected a table of destination = its settings' *_env names")
    ingest: IngestFile = Field(default_factory=IngestFile, description="expected a table")
    recipients: dict[RecipientName, Annotated[RecipientFile, Field(description="expected a table")]] = Field(
        default_factory=dict, description="expected a table of recipient name = its destinations and preferences")
    # maintenance windows (decisions/timeinterval.py, decisions/maintenance.py)
    time_intervals: tuple[Annotated[NamedIntervalFile, Field(description="expected a table")], ...] = Field(
        default=(), description="expected a list of tables ([[time_intervals]]: name, time_intervals)")
    maintenance: tuple[Annotated[MaintenanceFile, Field(description="expected a table")], ...] = Field(
        default=(), description="expected a list of tables ([[maintenance]]: time_intervals, matchers)")
    # per-type throttle windows and digests (decisions/windows.py)
    throttle: ThrottleFile = Field(default_factory=ThrottleFile, description="expected a table")
    digests: DigestsFile = Field(default_factory=DigestsFile, description="expected a table")
    inhibit_rules: tuple[Annotated[InhibitRuleFile, Field(description="expected a table")], ...] = Field(
        default=(), description="expected a list of tables ([[inhibit_rules]])")
    escalations: dict[Annotated[str, Strict()], Annotated[EscalationFile, Field(description="expected a table")]] = Field(
        default_factory=dict, description="expected a table of policy name = its steps and settings")
    groups: tuple[Annotated[GroupFile, Field(description="expected a table")], ...] = Field(
        default=(), description="expected an array of tables ([[groups]])")
    flapping: FlapFile | None = Field(default=None, description="expected a table")


TOP_LEVEL_KEYS = tuple(RoutingFile.model_fields)
RECEIVER_KEYS = tuple(ReceiverFile.model_fields)


def _fail(loc: Loc, message: str) -> RoutingError:
    return RoutingError(_FILE, f"{path(loc)}: {message}", loc)


def _receiver(given: ReceiverFile, where: Loc, base: ReceiverPolicy) -> ReceiverPolicy:
    """``base`` with what ``given`` sets; the checks of values together."""
    own = {k: getattr(given, k) for k in given.model_fields_set}
    if "max_attempts" in own:
        own["max_attempts_set"] = own.pop("max_attempts")
    if "breaker_reset_s" in own and "breaker_max_reset_s" not in own:  # a longer reset alone: the cap follows it
        own["breaker_max_reset_s"] = max(own["breaker_reset_s"], base.breaker_max_reset_s)
    rp = replace(base, **own)
    if rp.max_attempts_set is None and 1 + len(rp.schedule) > 100:
        raise _fail((*where, "backoff_s"), "backoff_s and slow_backoff_s: at most 99 steps together")
    if rp.breaker_max_reset_s < rp.breaker_reset_s:
        raise _fail((*where, "breaker_max_reset_s"),
                    f"the longest open period, at least breaker_reset_s ({rp.breaker_reset_s:g})")
    return rp


def parse_policy(doc: Mapping[str, Any]) -> RoutingPolicy:
    """Validate a routing document (the parsed TOML); errors name the offending key."""
    try:
        f = RoutingFile.model_validate(doc)
    except ValidationError as exc:
        raise RoutingError(_FILE, describe(exc, RoutingFile), explain(exc, RoutingFile)[0][0]) from None
    default = _receiver(f.receivers.get("default", ReceiverFile()), ("receivers", "default"), ReceiverPolicy())
    receivers: dict[str, ReceiverPolicy] = {}
    for name, r in f.receivers.items():
        if name == "default":
            continue
        if "allow_mentions" in r.model_fields_set and name.split(":", 1)[0] not in MENTION_CHANNELS:
            raise _fail(("receivers", name, "allow_mentions"), f"only for {' and '.join(MENTION_CHANNELS)} destinations")
        receivers[name] = _receiver(r, ("receivers", name), default)
    mapping = DEFAULT_MAPPING if f.ingest.alertmanager is None else f.ingest.alertmanager.mapping()
    intervals, twice = named_intervals(f.time_intervals)
    if twice is not None:
        raise _fail(twice, "a name given to two [[time_intervals]]")
    maintenance, unknown = maintenance_policy(intervals, f.maintenance)
    if unknown is not None:
        raise _fail(*unknown)
    names: set[str] = set()
    for i, ir in enumerate(f.inhibit_rules):
        if ir.name in names:
            raise _fail(("inhibit_rules", i, "name"), f"another rule is named {ir.name!r}: each name once")
        names.add(ir.name)
    escalations = tuple(_escalation(name, e) for name, e in f.escalations.items())
    return RoutingPolicy(f.severity, f.types, f.always, receivers, default, f.destinations, mapping,
                         recipients=_recipients(f.recipients), maintenance=maintenance,
                         windows=window_policy(f.throttle, f.digests),
                         inhibit_rules=tuple(r.rule() for r in f.inhibit_rules), escalations=escalations,
                         groups=_group_rules(f.groups),
                         flapping=f.flapping.settings() if f.flapping is not None else FLAP_OFF)


def problems(doc: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Every error of a routing document (``tocsin check-config``), each as its key path and
    ``path: what is expected``: all of the model's, else the first of the checks of values
    together (``parse_policy``'s); [] when the document is valid."""
    try:
        RoutingFile.model_validate(doc)
    except ValidationError as exc:
        return [(loc, f"{path(loc)}: {what}" if loc else what) for loc, what in explain(exc, RoutingFile)]
    try:
        parse_policy(doc)
    except RoutingError as exc:
        return [(exc.loc, str(exc).removeprefix(f"{exc.setting}: "))]
    return []


def default_policy_path() -> Path:
    return Path(__file__).resolve().parent.parent / "routing.default.toml"


def load_policy(path: Path | None) -> RoutingPolicy:
    p = path or default_policy_path()
    try:
        doc = tomllib.loads(p.read_text("utf-8"))
    except FileNotFoundError:
        raise RoutingError(_FILE, f"no such file: {p}") from None
    except OSError as exc:  # a directory, no permission
        raise RoutingError(_FILE, f"cannot read {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise RoutingError(_FILE, f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise RoutingError(_FILE, f"{p}: {exc}") from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise RoutingError(_FILE, f"{p}: arrays or tables nested too deeply") from None
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
    return [route_to(name, policy, enabled_set) for name in wanted]


def preferred(routes: list[Route], policy: RoutingPolicy, severity: int, alert_type: str, at: dt.datetime, *,
              is_recovery: bool, enabled: Iterable[str],
              versions: Mapping[str, Sequence[Version]] | None = None) -> tuple[list[Route], str]:
    """``routes`` as the recipients' preferences leave them at event time ``at``
    (decisions/preferences.py; ``versions``: people's changes through the API), and why they
    changed ("" when they did not). A destination an opt-in adds gets its receiver's route."""
    applied = apply_preferences([r.destination for r in routes], policy.recipients, severity, alert_type, at,
                                is_recovery=is_recovery, enabled=enabled, versions=versions)
    if not applied.changes:
        return routes, ""
    by_name = {r.destination: r for r in routes}
    return [by_name.get(d) or route_to(d, policy, enabled) for d in applied.destinations], applied.reason


def route_to(name: str, policy: RoutingPolicy, enabled: Iterable[str]) -> Route:
    """The route to destination ``name``: its receiver's policy and failover chain (the enabled
    destinations of it)."""
    enabled_set = set(enabled) | {"console:default"}
    rp = policy.policy_for(name)
    chain = rp.failover if rp.failover is not None else default_failover(name)
    failover = tuple(d for d in chain if d in enabled_set and d != name)
    return Route(name, name, rp.max_attempts, rp.schedule, failover)
