"""Silences: whether one applies to an alert, and how a silence may change. Pure, clock passed in.

Alertmanager's semantics (``silence/silence.go``, ``pkg/labels/matcher.go``), over an alert's
*labels* (``labels_of``):

- a matcher compares one label's value, an absent label reading as ``""``: ``=`` equal,
  ``!=`` not equal, ``=~`` / ``!~`` a regular expression anchored at both ends
  (``^(?:value)$``, as Alertmanager compiles it); a silence matches when all its matchers do;
- a silence is ``pending`` before ``startsAt``, ``active`` in ``[startsAt, endsAt)``,
  ``expired`` from ``endsAt`` on;
- a silence may be changed in place (``can_update``) only where that cannot rewrite the
  past: same matchers; an active one keeps its start and may not end before now; a pending
  one may not start before now; an expired one never. Otherwise the old one is expired and a
  new one (new id) created. Expiring ends an active silence now, and a pending one before it
  began (start = end = now).

Event time decides. A silence is the list of its versions (messages on ``P.silences``); at
time ``t`` the version that decides is the last one set at or before ``t`` (``current``), and
it silences an alert whose time ``t`` is in that version's ``[startsAt, endsAt)``. Versions
set after ``t`` never change what was decided for ``t``: a replay decides the same.

Beyond Alertmanager (its issue #226): the resolution of an alert whose firing was notified is
notified even while a silence matches it, unless that silence says ``muteResolved``.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache

from ..schemas.alert import AlertEvent
from ..schemas.silence import Silence, SilenceMatcher

#: alert fields every alert has as labels (``labels_of``); an alert's own labels add to them
FIELD_LABELS = ("alertname", "type", "severity", "fingerprint", "account_id", "symbol", "strategy_id",
                "run_id", "source")


class State(str, enum.Enum):
    PENDING = "pending"
    ACTIVE = "active"
    EXPIRED = "expired"


#: Alertmanager's order of silences by state (api/v2 SortSilences)
STATE_ORDER = {State.ACTIVE: 1, State.PENDING: 2, State.EXPIRED: 3}


class InvalidSilence(ValueError):
    """A silence Alertmanager would refuse; the message says why."""


_LEADING_FLAGS = re.compile(r"^\(\?([ims]+)\)")


@lru_cache(maxsize=1024)
def compiled(pattern: str) -> re.Pattern[str]:
    """A matcher's regular expression, used anchored at both ends (``fullmatch``: Alertmanager's
    ``^(?:pattern)$``, where ``$`` is the end of the text), ``\\d``, ``\\w``, ``\\s`` ASCII as in
    Go's RE2 (``InvalidSilence`` if it does not compile)."""
    flags = _LEADING_FLAGS.match(pattern)  # Go takes (?i) inside the anchoring group, Python at the start only
    lead, body = (f"(?{flags.group(1)})", pattern[flags.end():]) if flags else ("", pattern)
    try:
        return re.compile(f"{lead}(?:{body})", re.ASCII)
    except re.error as exc:
        raise InvalidSilence(f"invalid regular expression {pattern!r}: {exc}") from None


def matches(m: SilenceMatcher, labels: Mapping[str, str]) -> bool:
    value = labels.get(m.name, "")
    if m.is_regex:
        return (compiled(m.value).fullmatch(value) is not None) is m.is_equal
    return (value == m.value) is m.is_equal


def matches_all(matchers: Iterable[SilenceMatcher], labels: Mapping[str, str]) -> bool:
    return all(matches(m, labels) for m in matchers)


def matches_empty(m: SilenceMatcher) -> bool:
    """Whether the matcher matches an absent label (Alertmanager's ``matchesEmpty``)."""
    if not m.is_equal:
        return False
    if m.is_regex:
        return compiled(m.value).fullmatch("") is not None
    return m.value == ""


def labels_of(alert: AlertEvent) -> dict[str, str]:
    """What a silence's matchers see of an alert: ``alertname`` and ``type`` (the type),
    ``severity`` (``1``..``3``), ``fingerprint``, the entity fields and ``source`` that are set,
    then the alert's own labels (``details["labels"]``, an object of strings, as the
    Alertmanager ingest keeps them), which win on a name they share."""
    out = {"alertname": alert.type, "type": alert.type, "severity": str(alert.severity),
           "fingerprint": alert.fingerprint}
    e = alert.entity
    for name in ("account_id", "symbol", "strategy_id", "run_id"):
        v = getattr(e, name)
        if v:
            out[name] = v
    if alert.source:
        out["source"] = alert.source
    own = alert.details.get("labels") if isinstance(alert.details, dict) else None
    if isinstance(own, dict):
        for k, v in own.items():
            if isinstance(k, str) and isinstance(v, str):
                out[k] = v
    return out


def state_at(s: Silence, at: dt.datetime) -> State:
    if at < s.starts_at:
        return State.PENDING
    if at < s.ends_at:
        return State.ACTIVE
    return State.EXPIRED


def covers(s: Silence, at: dt.datetime) -> bool:
    return s.starts_at <= at < s.ends_at


def current(versions: Sequence[Silence], at: dt.datetime) -> Silence | None:
    """The version that decides at ``at``: the last set at or before it (in topic order on a tie)."""
    best: Silence | None = None
    for v in versions:
        if v.updated <= at and (best is None or v.updated >= best.updated):
            best = v
    return best


def latest(versions: Sequence[Silence]) -> Silence:
    """The version shown: the last set (in topic order on a tie)."""
    best = versions[0]
    for v in versions[1:]:
        if v.updated >= best.updated:
            best = v
    return best


#: a version compiled for the per-alert question: (set at, starts, ends, matchers, mute resolved);
#: times as epoch seconds, matchers as (name, value, regex or None, is_equal), None if one does
#: not compile (a hand-made version: it mutes nothing)
_Compiled = tuple[float, float, float, tuple[tuple[str, str, "re.Pattern[str] | None", bool], ...] | None, bool]


def _compile(v: Silence) -> _Compiled:
    try:
        ms = tuple((m.name, m.value, compiled(m.value) if m.is_regex else None, m.is_equal) for m in v.matchers)
    except InvalidSilence:
        ms = None
    return v.updated.timestamp(), v.starts_at.timestamp(), v.ends_at.timestamp(), ms, v.mute_resolved


class SilenceIndex:
    """Silences by id (each the list of its versions, in topic order), compiled so that the
    throttle's question per alert costs little: silences none of whose versions reach the
    alert's time are passed over by their latest end, without a look at their versions."""

    def __init__(self, silences: Mapping[str, Sequence[Silence]] | None = None) -> None:
        #: id -> (latest end of any version, its versions ordered by when they were set)
        self._by_id: dict[str, tuple[float, tuple[_Compiled, ...]]] = {}
        self._order: list[tuple[float, str]] | None = None  # (latest end, id), latest first
        for sid, versions in (silences or {}).items():
            self.set(sid, versions)

    def set(self, sid: str, versions: Sequence[Silence]) -> None:
        """(Re)compile one silence from all its versions."""
        if not versions:
            self._by_id.pop(sid, None)
        else:
            # stable: versions set at the same time keep their topic order (the later decides)
            compiled_ = tuple(sorted((_compile(v) for v in versions), key=lambda c: c[0]))
            self._by_id[sid] = (max(c[2] for c in compiled_), compiled_)
        self._order = None

    def __len__(self) -> int:
        return len(self._by_id)

    def silenced_by(self, alert: AlertEvent, now: dt.datetime,
                    notified_firing: bool | Callable[[], bool] = False) -> str | None:
        t = now.timestamp()
        order = self._order
        if order is None:
            order = self._order = sorted(((end, sid) for sid, (end, _) in self._by_id.items()), reverse=True)
        labels: dict[str, str] | None = None
        found: list[tuple[str, bool]] = []
        for end, sid in order:
            if end <= t:
                break  # neither this silence nor any after it reaches ``now``
            versions = self._by_id[sid][1]
            current_: _Compiled | None = None
            for c in versions:  # the last set at or before ``now``
                if c[0] > t:
                    break
                current_ = c
            if current_ is None or not current_[1] <= t < current_[2] or current_[3] is None:
                continue
            if labels is None:
                labels = labels_of(alert)
            for name, value, regex, equal in current_[3]:
                got = labels.get(name, "")
                if ((regex.fullmatch(got) is not None) if regex is not None else got == value) is not equal:
                    break
            else:
                found.append((sid, current_[4]))
        if not found:
            return None
        if alert.is_recovery and not all(mute for _, mute in found):
            notified = notified_firing() if callable(notified_firing) else notified_firing
            if notified:
                found = [f for f in found if f[1]]
                if not found:
                    return None
        return min(sid for sid, _ in found)


def silenced_by(silences: Mapping[str, Sequence[Silence]] | SilenceIndex, alert: AlertEvent, now: dt.datetime,
                notified_firing: bool | Callable[[], bool] = False) -> str | None:
    """The id of a silence that mutes ``alert`` at ``now``, or None.

    ``silences``: each silence's versions by id (or a ``SilenceIndex`` of them, as the worker
    keeps it). ``now`` is the time the decision is taken for: the throttle passes the alert's
    event time (so a replay decides the same); "is it silenced right now" passes the clock.
    ``notified_firing``: whether the firing this alert resolves was notified (only asked, if
    a callable, for a recovery a silence matches). Such a recovery is muted only by a silence
    with ``mute_resolved``. When several silences match, the one with the smallest id is named.
    """
    index = silences if isinstance(silences, SilenceIndex) else SilenceIndex(silences)
    return index.silenced_by(alert, now, notified_firing)


# ------------------------------------------------------------------ setting and expiring


def validate(s: Silence) -> None:
    """Alertmanager's ``validateSilence`` for one version (``InvalidSilence`` says why)."""
    if not s.matchers:
        raise InvalidSilence("at least one matcher required")
    for i, m in enumerate(s.matchers):
        if m.is_regex:
            try:
                compiled(m.value)
            except InvalidSilence as exc:
                raise InvalidSilence(f"invalid label matcher {i}: {exc}") from None
    if all(matches_empty(m) for m in s.matchers):
        raise InvalidSilence("at least one matcher must not match the empty string")
    if s.ends_at < s.starts_at:
        raise InvalidSilence("end time must not be before start time")


def can_update(prev: Silence, new: Silence, now: dt.datetime) -> bool:
    """Whether ``prev`` may become ``new`` in place without changing what was silenced before
    ``now`` (Alertmanager's ``canUpdate``; ``muteResolved`` counts as a matcher would)."""
    if prev.matchers != new.matchers or prev.mute_resolved != new.mute_resolved:
        return False
    state = state_at(prev, now)
    if state is State.ACTIVE:
        return int(new.starts_at.timestamp()) == int(prev.starts_at.timestamp()) and not new.ends_at < now
    if state is State.PENDING:
        return not new.starts_at < now
    return False


def expired(prev: Silence, now: dt.datetime) -> Silence | None:
    """The version that expires ``prev`` at ``now``, or None when it has expired already."""
    state = state_at(prev, now)
    if state is State.EXPIRED:
        return None
    if state is State.ACTIVE:
        return prev.model_copy(update={"ends_at": now, "updated_at": now})
    return prev.model_copy(update={"starts_at": now, "ends_at": now, "updated_at": now})


@enum.unique
class SetResult(str, enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    REPLACED = "replaced"  # the old one expired, a new one created


def plan_set(prev: Silence | None, new: Silence, now: dt.datetime, new_id: str) -> tuple[SetResult, list[Silence]]:
    """What setting ``new`` writes, in order (Alertmanager's ``Silences.Set``): ``prev`` is the
    silence of ``new.id`` as shown (None for a new one), ``new_id`` the id a new silence gets.
    ``InvalidSilence`` when it cannot be set."""
    now = now.astimezone(dt.UTC)
    if not new.starts_at < new.ends_at:
        raise InvalidSilence("Failed to create silence: start time must be before end time")
    if new.ends_at < now:
        raise InvalidSilence("Failed to create silence: end time can't be in the past")
    validate(new)
    if prev is not None and can_update(prev, new, now):
        return SetResult.UPDATED, [new.model_copy(update={"id": prev.id, "updated_at": now})]
    created = new.model_copy(update={"id": new_id, "updated_at": now,
                                     "starts_at": max(new.starts_at, now)})
    if prev is None:
        return SetResult.CREATED, [created]
    end = expired(prev, now)
    return SetResult.REPLACED, [*([end] if end is not None else []), created]


# ------------------------------------------------------------------ matcher text (filters)

_MATCHER_RE = re.compile(r'^\s*([^\s=!~"]+|"(?:[^"\\]|\\.)*")\s*(=~|!~|!=|=)\s*(.*?)\s*$', re.DOTALL)


def _unquote(text: str) -> str:
    """As Alertmanager's matcher parser reads a value: the quotes dropped, ``\\n``, ``\\"`` and
    ``\\\\`` unescaped, any other backslash kept (``\\d`` stays a regex's ``\\d``)."""
    body = text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append("\n" if nxt == "n" else nxt if nxt in '"\\' else ch + nxt)
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def parse_matcher(text: str) -> SilenceMatcher:
    """``name="value"`` (``=``, ``!=``, ``=~``, ``!~``; the value quoted or bare) as a matcher,
    as amtool writes a filter (``ValueError`` if it is not one)."""
    m = _MATCHER_RE.match(text)
    if not m:
        raise ValueError(f"bad matcher format: {text}")
    name, op, value = _unquote(m.group(1)), m.group(2), _unquote(m.group(3))
    if not name:
        raise ValueError(f"bad matcher format: {text}")
    matcher = SilenceMatcher(name=name, value=value, is_regex="~" in op, is_equal=not op.startswith("!"))
    if matcher.is_regex:
        compiled(matcher.value)
    return matcher


def filter_matches(s: Silence, filters: Iterable[SilenceMatcher]) -> bool:
    """Alertmanager's ``CheckSilenceMatchesFilterLabels``: every filter is one of the silence's
    matchers, exactly (name, operator and value)."""
    return all(f in s.matchers for f in filters)


def sort_key(s: Silence, now: dt.datetime) -> tuple[int, float]:
    """Alertmanager's order: active by end, pending by start, expired by end, latest first."""
    state = state_at(s, now)
    if state is State.ACTIVE:
        return STATE_ORDER[state], s.ends_at.timestamp()
    if state is State.PENDING:
        return STATE_ORDER[state], s.starts_at.timestamp()
    return STATE_ORDER[state], -s.ends_at.timestamp()


__all__ = ["FIELD_LABELS", "InvalidSilence", "SetResult", "SilenceIndex", "State", "can_update", "covers", "current", "expired",
           "filter_matches", "labels_of", "latest", "matches", "matches_all", "matches_empty", "parse_matcher",
           "plan_set", "silenced_by", "sort_key", "state_at", "validate"]
