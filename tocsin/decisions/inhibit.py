"""Inhibition: an alert is muted while a related alert fires (Alertmanager's ``inhibit_rules``).
Pure, event time passed in.

A rule (routing file ``[[inhibit_rules]]``) has a name, ``source_matchers``, ``target_matchers``
and ``equal``; matchers are Alertmanager's (``type="order_rejected"``, ``!=``, ``=~``, ``!~``),
over the alert's labels as silences see them (decisions/silence.labels_of: type, severity,
fingerprint, the entity fields, source and the alert's own labels). An alert is **inhibited**
at its event time ``t`` by the first rule (in file order) such that

- the alert matches the rule's ``target_matchers``;
- some *source* fires at ``t``: an alert of another fingerprint matching ``source_matchers``,
  whose last change at or before ``t`` is a firing (a resolve at the same time wins), with the
  same value of every ``equal`` label (an absent label reads as ``""``, as in Alertmanager);
- when the alert matches the rule's ``source_matchers`` too, a source that also matches its
  ``target_matchers`` does not count (Alertmanager's two-sided match: two alerts each
  matching both sides do not inhibit each other);
- it is not a recovery of an alert whose firing was notified (those are never inhibited).

A source fires whether or not it was notified (Alertmanager: whether or not it is silenced).
It fires from a firing event until a resolve: an event with ``action = "resolve"`` of the
same fingerprint, or a recovery naming it in ``resolves`` (``component_recovered`` resolves
``component_unhealthy`` of the same entity), or an on-call's resolve/dismiss (``closed_facts``),
and at most the rule's ``source_timeout_s`` after its last firing event.

Bounded: ``forget`` drops the source facts that can change no decision of an event at most
``KEEP_LATE_S`` older than the newest fact; targets it keeps, ended ones too (an ended target's
entry is what keeps a late-read firing fact of it from holding it again), so they grow with the
fingerprints ever inhibited, one small entry each.

**Release**: a target inhibited at ``t0`` is released at the first time ``t >= t0`` at which
it would not be inhibited any more (a source resolving), unless it resolved first: its last
inhibited event is re-injected with event time ``t`` and a new alert id derived from the old
one and ``t`` (``release_event``: a replay makes the same), and decided as any alert is,
the decision's reason naming the rule.

State is a set of facts (schemas/inhibit.InhibitionFact), each what one event made true at
its event time; ``InhibitIndex`` folds them in any order into the same state, so a replay —
the same facts in whatever order — decides the same.
"""

from __future__ import annotations

import bisect
import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from ..schemas.alert import AlertEvent
from ..schemas.inhibit import InhibitionFact
from ..schemas.messages import NAMESPACE
from ..schemas.silence import SilenceMatcher
from .silence import labels_of, matches_all

#: the key of a released event's ``details`` saying which rule held it and since when
RELEASE_KEY = "inhibit_released"
#: most changes kept per source (the oldest dropped first)
CHANGES_MAX = 256
#: a source with no firing event for this long stops inhibiting (a rule's ``source_timeout_s``):
#: Alertmanager's resolve_timeout (5 min) assumes a source re-sent every minute; Tocsin's sources
#: are events sent once per change (component_unhealthy), so a day
SOURCE_TIMEOUT_S = 86_400.0
#: how late (event time before the newest fact) an event is still decided as if nothing were
#: forgotten: facts older than this plus the longest source timeout are forgotten
KEEP_LATE_S = 86_400.0
#: changes folded in between two ``forget`` sweeps (core/inhibitions.py)
FORGET_EVERY = 4096


@dataclass(frozen=True)
class InhibitRule:
    name: str
    source_matchers: tuple[SilenceMatcher, ...]
    target_matchers: tuple[SilenceMatcher, ...]
    equal: tuple[str, ...] = ()
    #: a source whose last firing event is this old stops inhibiting under this rule
    source_timeout_s: float = SOURCE_TIMEOUT_S

    def is_source(self, labels: Mapping[str, str]) -> bool:
        return matches_all(self.source_matchers, labels)

    def is_target(self, labels: Mapping[str, str]) -> bool:
        return matches_all(self.target_matchers, labels)

    def key(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        """The values of the ``equal`` labels (absent: ``""``)."""
        return tuple(labels.get(n, "") for n in self.equal)


@dataclass(frozen=True, slots=True)
class Inhibition:
    """Why an alert is inhibited: the rule, and the firing sources (sorted)."""

    rule: str
    sources: tuple[str, ...]


@dataclass
class Source:
    labels: dict[str, str]
    #: (event time, firing), sorted; at the same time a resolve sorts last (it wins)
    changes: list[tuple[float, bool]] = field(default_factory=list)

    def add(self, at: float, firing: bool) -> bool:
        entry = (at, not firing)  # sort key: at a tie, (t, True) = resolved after (t, False) = firing
        i = bisect.bisect_left(self.changes, entry)
        if i < len(self.changes) and self.changes[i] == entry:
            return False
        self.changes.insert(i, entry)
        if len(self.changes) > CHANGES_MAX:
            del self.changes[0]
        return True

    def firing_at(self, t: float, timeout: float | None = None) -> bool:
        """Whether its last change at or before ``t`` is a firing (every firing event is one),
        less than ``timeout`` before ``t``."""
        i = bisect.bisect_right(self.changes, (t, True))
        if i == 0 or self.changes[i - 1][1]:
            return False
        return timeout is None or t < self.changes[i - 1][0] + timeout

    def has(self, at: float, firing: bool) -> bool:
        i = bisect.bisect_left(self.changes, (at, not firing))
        return i < len(self.changes) and self.changes[i] == (at, not firing)

    def prune(self, before: float) -> None:
        """Drop the changes older than ``before``."""
        del self.changes[:bisect.bisect_left(self.changes, (before, False))]

    def known(self) -> bool:
        return bool(self.changes)


@dataclass(frozen=True, slots=True)
class Target:
    """A target's latest fact (by event time; at a tie the one not firing)."""

    at: float
    firing: bool
    rule: str | None
    alert: AlertEvent | None

    @property
    def order(self) -> tuple[float, int]:
        return (self.at, 0 if self.firing else 1)


class InhibitIndex:
    """The sources and targets folded from their facts, with each rule's sources by the values
    of its ``equal`` labels, so a target's question looks only at its own group."""

    def __init__(self, rules: Iterable[InhibitRule] = ()) -> None:
        self.rules: tuple[InhibitRule, ...] = tuple(rules)
        self.sources: dict[str, Source] = {}
        self.targets: dict[str, Target] = {}
        #: rule index -> equal values -> source fingerprints matching its source_matchers
        self._groups: list[dict[tuple[str, ...], set[str]]] = [{} for _ in self.rules]
        #: how many facts changed it
        self.version = 0
        #: (type, alertname) -> whether some rule may take an alert of them as a source, as a target
        self._kinds: dict[tuple[str, str], tuple[bool, bool]] = {}
        #: the newest fact's event time (what ``forget`` measures age from)
        self.watermark = float("-inf")
        self._longest = max((r.source_timeout_s for r in self.rules), default=0.0)

    def cut(self) -> float:
        """Facts about sources older than this change no decision of an event at most
        ``KEEP_LATE_S`` older than the newest fact: a source's firing older than the cut
        timed out before then, and its resolves end nothing that still fires."""
        return self.watermark - KEEP_LATE_S - self._longest

    def forget(self) -> int:
        """Forget the source changes older than the cut (and the sources left with none); how
        many entries went. Changes no decision of an event at most ``KEEP_LATE_S`` older than
        the newest fact (test_inhibit's property).

        Targets are not forgotten (conservative): a target's fact older than the cut may still
        be read after it (facts fold in any order: the throttle's own facts read back from the
        topic, a fact read twice), and a held target is pending however old its firing is. An
        ended target's entry is what says that such a firing fact, read late, is over: forgotten,
        the fact would hold the target again and it would be released (notified) although it
        had resolved. So the ended targets stay, one small entry per fingerprint ever inhibited
        (no alert kept: the fact that ended it has none)."""
        cut, gone = self.cut(), 0
        for fp in list(self.sources):
            s = self.sources[fp]
            n = len(s.changes)
            s.prune(cut)
            gone += n - len(s.changes)
            if not s.changes:
                self._ungroup(fp, s.labels)
                del self.sources[fp]
        return gone

    def may_match(self, alert: AlertEvent) -> tuple[bool, bool]:
        """Whether some rule may take ``alert`` as a source, as a target, by its type and
        alertname alone (its own labels may rename them): most alerts are of types no rule
        names, and are passed over without their labels."""
        t = a = alert.type
        own = alert.details.get("labels") if isinstance(alert.details, dict) else None
        if isinstance(own, dict):
            t = own["type"] if isinstance(own.get("type"), str) else t
            a = own["alertname"] if isinstance(own.get("alertname"), str) else a
        got = self._kinds.get((t, a))
        if got is None:
            if len(self._kinds) > 4096:  # producers inventing types: start again
                self._kinds.clear()
            named = {"type": t, "alertname": a}

            def may(ms: tuple[SilenceMatcher, ...]) -> bool:
                return matches_all((m for m in ms if m.name in named), named)

            got = self._kinds[(t, a)] = (any(may(r.source_matchers) for r in self.rules),
                                         any(may(r.target_matchers) for r in self.rules))
        return got

    def apply(self, fact: InhibitionFact) -> bool:
        """Fold one fact in; whether it changed anything (a fact read again changes nothing)."""
        changed = self._apply(fact)
        self.version += changed
        return changed

    def _apply(self, fact: InhibitionFact) -> bool:
        at = fact.at.timestamp()
        if fact.kind == "source" and at < self.cut():
            return False  # too old to change a decision (forget)
        self.watermark = max(self.watermark, at)
        if fact.kind == "source":
            s = self.sources.get(fact.fingerprint)
            if s is None:
                s = self.sources[fact.fingerprint] = Source(dict(fact.labels))
                self._group(fact.fingerprint, s.labels)
            elif (fact.labels and fact.firing and fact.labels != s.labels
                  and (not s.labels or at >= s.changes[-1][0])):
                self._ungroup(fact.fingerprint, s.labels)  # the newest firing's labels win
                s.labels = dict(fact.labels)
                self._group(fact.fingerprint, s.labels)
            return s.add(at, fact.firing)
        new = Target(at, fact.firing, fact.rule, fact.alert)
        old = self.targets.get(fact.fingerprint)
        if old is not None and old.order >= new.order:
            return False
        self.targets[fact.fingerprint] = new
        return True

    def _group(self, fp: str, labels: Mapping[str, str]) -> None:
        if not labels:  # known only by a resolve (a lifecycle resolve): fires nothing
            return
        for i, rule in enumerate(self.rules):
            if rule.is_source(labels):
                self._groups[i].setdefault(rule.key(labels), set()).add(fp)

    def _ungroup(self, fp: str, labels: Mapping[str, str]) -> None:
        for i, rule in enumerate(self.rules):
            if rule.is_source(labels):
                self._groups[i].get(rule.key(labels), set()).discard(fp)

    def source_firing(self, fp: str, t: float) -> bool | None:
        """Whether source ``fp`` fires at ``t``; None if it is not a known source."""
        s = self.sources.get(fp)
        return s.firing_at(t) if s is not None else None

    def source_has(self, fp: str, t: float) -> bool:
        """Whether source ``fp`` has a firing at ``t`` already (an event read again)."""
        s = self.sources.get(fp)
        return s is not None and s.has(t, True)

    def inhibited(self, labels: Mapping[str, str], fingerprint: str, t: float) -> Inhibition | None:
        """The inhibition of an alert (its labels and fingerprint) at event time ``t``, if any."""
        for i, rule in enumerate(self.rules):
            if not rule.is_target(labels):
                continue
            group = self._groups[i].get(rule.key(labels))
            if not group:
                continue
            two_sided = rule.is_source(labels)
            timeout = rule.source_timeout_s
            firing = sorted(fp for fp in group if fp != fingerprint and self.sources[fp].firing_at(t, timeout)
                            and not (two_sided and rule.is_target(self.sources[fp].labels)))
            if firing:
                return Inhibition(rule.name, tuple(firing))
        return None

    def pending(self) -> Iterator[tuple[str, Target]]:
        """The targets inhibited and neither resolved nor released since."""
        for fp, t in self.targets.items():
            if t.firing and t.alert is not None:
                yield fp, t

    def release_at(self, fingerprint: str) -> float | None:
        """When a pending target's inhibition ends: the first time from its inhibition on at
        which it is not inhibited (its sources' resolves are the candidates); None while it
        still is, or if it is not pending."""
        target = self.targets.get(fingerprint)
        if target is None or not target.firing or target.alert is None:
            return None
        labels = labels_of(target.alert)
        # never earlier than what forgetting keeps exact (a timer far behind: released then)
        start = max(target.at, self.watermark - KEEP_LATE_S)
        candidates = {start}
        for i, rule in enumerate(self.rules):
            if rule.is_target(labels):
                for fp in self._groups[i].get(rule.key(labels), ()):
                    # its resolves, and the ends of its firings (source_timeout_s)
                    candidates.update(at + rule.source_timeout_s * (not resolved)
                                      for at, resolved in self.sources[fp].changes)
        for c in sorted(c for c in candidates if c >= start):
            if self.inhibited(labels, fingerprint, c) is None:
                return c
        return None


@dataclass(frozen=True)
class Step:
    """What inhibition makes of one event: its inhibition (None: not inhibited), the facts to
    record, and the rule a released event was held by (its decision's reason)."""

    inhibition: Inhibition | None
    facts: tuple[InhibitionFact, ...] = ()
    released_by: str | None = None


NOT_INHIBITED = Step(None)


def _fact(kind: str, fp: str, event: AlertEvent, firing: bool, **kw: object) -> InhibitionFact:
    return InhibitionFact.model_validate({"kind": kind, "fingerprint": fp, "at": event.event_timestamp,
                                          "firing": firing, "made_by": str(event.alert_id), **kw})


def step(index: InhibitIndex, event: AlertEvent, *, muted: bool = False,
         notified_firing: bool | Callable[[], bool] = False) -> Step:
    """Decide one event: inhibited or not, and the facts it makes.

    ``muted``: an earlier step (a silence) muted it already: it is not inhibited, but its facts
    are still made (a silenced source still inhibits). ``notified_firing``: whether the firing a
    recovery resolves was notified (a callable is asked only for a recovery that would be
    inhibited); such a recovery is never inhibited.
    """
    if not index.rules:
        return NOT_INHIBITED
    t, fp = event.epoch, event.fingerprint
    recovery = event.is_recovery
    source, target = index.may_match(event)
    if not (source or target or recovery or RELEASE_KEY in event.details):
        return NOT_INHIBITED  # the common case: no rule names its type
    labels = labels_of(event)
    facts: list[InhibitionFact] = []
    # the sources' facts: every firing (the last one starts its timeout), a resolve of a firing one
    if source and any(r.is_source(labels) for r in index.rules) and (
            index.source_firing(fp, t) is not False if recovery else not index.source_has(fp, t)):
        facts.append(_fact("source", fp, event, not recovery, labels=labels))
    resolved = event.resolves if recovery and event.resolves and event.resolves != fp else None
    if resolved is not None and index.source_firing(resolved, t):
        facts.append(_fact("source", resolved, event, False))
    inhibition = None if muted or not target else index.inhibited(labels, fp, t)
    if inhibition is not None and recovery:
        notified = notified_firing() if callable(notified_firing) else notified_firing
        if notified:
            inhibition = None
    released = event.details.get(RELEASE_KEY) if isinstance(event.details, dict) else None
    rule = released.get("rule") if isinstance(released, dict) else None
    released_by = rule if isinstance(rule, str) and inhibition is None else None
    if inhibition is not None and not recovery:
        facts.append(_fact("target", fp, event, True, rule=inhibition.rule, alert=event))
    # a target ends: its recovery (inhibited or not), or its released event decided
    for ended in {fp, resolved} if recovery else ({fp} if released_by is not None else set()):
        if ended is not None and ended in index.targets and index.targets[ended].firing:
            facts.append(_fact("target", ended, event, False,
                               rule=inhibition.rule if inhibition else released_by))
    return Step(inhibition, tuple(facts), released_by)


def closed_facts(fingerprint: str, at: dt.datetime, made_by: str) -> tuple[InhibitionFact, ...]:
    """What an on-call's resolve or dismiss of ``fingerprint`` at ``at`` (``P.lifecycle``) makes:
    as a source it resolved, as a held target it ended (not released later)."""
    return tuple(InhibitionFact(kind=k, fingerprint=fingerprint, at=at, firing=False, made_by=made_by)
                 for k in ("source", "target"))


def release_event(alert: AlertEvent, at: float, rule: str | None) -> AlertEvent:
    """The event that releases an inhibited one at ``at``: the same alert at that time, with a
    new alert id derived from the old and ``at`` (a replay makes the same id), its ``details``
    saying which rule held it since when."""
    when = dt.datetime.fromtimestamp(at, dt.UTC)
    details = dict(alert.details)
    details[RELEASE_KEY] = {"rule": rule or "", "held_since": alert.event_timestamp.isoformat(),
                            "inhibited_alert_id": str(alert.alert_id)}
    return alert.model_copy(update={
        "alert_id": uuid.uuid5(NAMESPACE, f"inhibit-release/{alert.alert_id}/{when.isoformat()}"),
        "event_timestamp": when, "details": details})


__all__ = ["CHANGES_MAX", "FORGET_EVERY", "KEEP_LATE_S", "NOT_INHIBITED", "SOURCE_TIMEOUT_S", "closed_facts", "RELEASE_KEY", "InhibitIndex", "InhibitRule", "Inhibition", "Source",
           "Step", "Target", "release_event", "step"]
