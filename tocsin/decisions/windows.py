"""Per-type throttle windows and digests (issue #18 items 1 and 6). Pure over plain values.

**Windows.** Every alert type has a throttle window: the routing file's ``[throttle.types]``
entry for it, else ``[throttle] default_s``, else ``TOCSIN_THROTTLE_WINDOW_S``
(``window_for``). The window is a tumbling one in event time, as before: bucket = event epoch
// window. An event of the default window keeps the dedupe key ``fingerprint:bucket`` (so its
delivery ids are those of before); one of another length carries it: ``fingerprint:bucket/86400s``
(``window_tag``), so two lengths never share a key.

**Digests.** Where the routing file asks for it (``[digests] types``, optionally only for some
``receivers``), a window whose first notification was followed by suppressed repeats ends
with one digest notification per receiver: "order_rejected ACC1 fired 37 more times in the
last 10 min". The throttle plans it at the window's first suppression (``plan_digest``): one
command per receiver, due at the window's end, with deterministic ids (from the fingerprint and
the bucket), held by the retry agent; when it is released its count is the window's
suppressed count read then (``digest_count``: the larger of the one carried and the table's),
and the decision ``digest`` is recorded with its reason (``digest_reason``).

Neither ever mutes a recovery: recoveries bypass the throttle (decisions/throttle.py) and are
never digested.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, Strict

from ..schemas.messages import NAMESPACE, Outcome
from .config_model import Table, invalid

#: the longest throttle window a routing file may set: 7 days
MAX_WINDOW_S = 7 * 86400
#: every type (``[digests] types = ["*"]``)
ALL_TYPES = "*"
_TYPE = re.compile(r"[a-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class WindowPolicy:
    """The routing file's ``[throttle]`` and ``[digests]``, as the decisions read them."""

    #: None: TOCSIN_THROTTLE_WINDOW_S
    default_s: int | None = None
    by_type: Mapping[str, int] = field(default_factory=dict)
    #: the types whose windows end with a digest (``*``: every type)
    digest_types: frozenset[str] = frozenset()
    #: None: every receiver the alert routes to; else only these
    digest_receivers: frozenset[str] | None = None

    @property
    def longest_s(self) -> int:
        return max((self.default_s or 0, *self.by_type.values()), default=0)


DEFAULT_WINDOWS = WindowPolicy()


def default_window(policy: WindowPolicy, setting_s: int) -> int:
    """The default window: the routing file's ``default_s``, else the setting."""
    return policy.default_s if policy.default_s is not None else setting_s


def window_for(policy: WindowPolicy, alert_type: str, default_s: int) -> int:
    """The throttle window of ``alert_type``; ``default_s`` is ``default_window``'s."""
    return policy.by_type.get(alert_type, default_s)


def window_tag(window_s: int, default_s: int) -> str:
    """What a dedupe key carries after its bucket: nothing for the default window (its keys
    and delivery ids as they always were), ``/<seconds>s`` for another length."""
    return "" if window_s == default_s else f"/{window_s}s"


def window_lengths(policy: WindowPolicy, default_s: int) -> tuple[int, ...]:
    """Every window length in use, the default first (a recovery looks for its problem's
    notification in each: it does not know the problem's type)."""
    others = sorted({w for w in policy.by_type.values() if w != default_s})
    return (default_s, *others)


# ------------------------------------------------------------------------------- digests


def wants_digest(policy: WindowPolicy, alert_type: str) -> bool:
    types = policy.digest_types
    return bool(types) and (ALL_TYPES in types or alert_type in types)


def digest_receiver(policy: WindowPolicy, receiver: str) -> bool:
    return policy.digest_receivers is None or receiver in policy.digest_receivers


@dataclass(frozen=True, slots=True)
class DigestPlan:
    """A digest to send at ``due`` (the window's end) under ``dedupe_key``."""

    dedupe_key: str
    window_start: dt.datetime
    window_s: int
    due: dt.datetime
    decision_id: uuid.UUID


def digest_key(dedupe_key: str) -> str:
    """The dedupe key of a window's digest: its delivery ids (``delivery_id_for``) and those of
    its failovers differ from the window's notification's."""
    return f"{dedupe_key}:digest"


def plan_digest(policy: WindowPolicy, alert_type: str, is_recovery: bool, outcome: Outcome,
                suppressed_count: int, dedupe_key: str, bucket: int, window_s: int) -> DigestPlan | None:
    """Whether this decision starts a digest: the window's first suppressed repeat (count 1)
    of a type that asks for one; never a recovery. A replay of the same events plans the same
    digest (same ids), once per window."""
    if is_recovery or outcome is not Outcome.SUPPRESS or suppressed_count != 1:
        return None
    if not wants_digest(policy, alert_type):
        return None
    start = bucket * window_s
    key = digest_key(dedupe_key)
    return DigestPlan(key, dt.datetime.fromtimestamp(start, dt.UTC), window_s,
                      dt.datetime.fromtimestamp(start + window_s, dt.UTC),
                      uuid.uuid5(NAMESPACE, f"digest/{key}"))


def digest_count(carried: int, in_table: int | None) -> int:
    """The count a digest reports when it fires: the window's suppressed count in the table,
    never less than the one it carried (the table may have dropped the window, or be another
    worker's after a rebalance)."""
    return max(carried, in_table or 0)


def human_duration(seconds: float) -> str:
    """``600`` → ``10 min``, ``86400`` → ``24 h``, ``90`` → ``90 s``."""
    s = int(seconds)
    if s % 3600 == 0 and s >= 3600:
        return f"{s // 3600} h"
    if s % 60 == 0 and s >= 60:
        return f"{s // 60} min"
    return f"{s} s"


def digest_text(alert_type: str, entity: Mapping[str, Any], count: int, window_s: int) -> str:
    """``order_rejected ACC1 fired 37 more times in the last 10 min``: the type, the entity's
    values given, the count and the window."""
    what = " ".join([alert_type, *(str(v) for v in entity.values() if v not in (None, ""))])
    times = "time" if count == 1 else "times"
    return f"{what} fired {count} more {times} in the last {human_duration(window_s)}"


def digest_reason(count: int, window_s: int, window_start: dt.datetime) -> str:
    return (f"digest: {count} suppressed in the {human_duration(window_s)} window from "
            f"{window_start.astimezone(dt.UTC).isoformat().replace('+00:00', 'Z')}")


# -------------------------------------------------------------------- the routing file


def _type_name(value: Any) -> str:
    if not isinstance(value, str) or not _TYPE.fullmatch(value):
        raise invalid("an alert type ([a-z0-9_.-], 1..64 characters)")
    return value


def _type_or_all(value: Any) -> str:
    return ALL_TYPES if value == ALL_TYPES else _type_name(value)


def _receiver(value: Any) -> str:
    if not isinstance(value, str) or ":" not in value:
        raise invalid("a destination, channel:name")
    return value


WindowSeconds = Annotated[int, Strict(), Field(ge=1, le=MAX_WINDOW_S,
                                               description=f"seconds, a whole number 1..{MAX_WINDOW_S} (7 days)")]


class ThrottleFile(Table):
    """``[throttle]``: the default window and ``[throttle.types]``, a window per alert type."""

    default_s: WindowSeconds | None = None
    types: dict[Annotated[str, BeforeValidator(_type_name)], WindowSeconds] = Field(
        default_factory=dict, description="expected a table of alert type = window seconds")


class DigestsFile(Table):
    """``[digests]``: the types whose throttle windows end with a digest of their suppressed
    repeats, and optionally which receivers get them (default: every receiver of the alert)."""

    types: tuple[Annotated[str, BeforeValidator(_type_or_all)], ...] = Field(
        default=(), description="expected a list of alert types (or \"*\")")
    receivers: tuple[Annotated[str, BeforeValidator(_receiver)], ...] | None = Field(
        default=None, description="expected a list of destinations")


def window_policy(throttle: ThrottleFile, digests: DigestsFile) -> WindowPolicy:
    return WindowPolicy(throttle.default_s, dict(throttle.types), frozenset(digests.types),
                        None if digests.receivers is None else frozenset(digests.receivers))
