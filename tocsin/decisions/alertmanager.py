"""Alertmanager's alerts as Tocsin alert events: the API v2 (and v1) that Prometheus, Grafana,
Loki and vmalert post to, and the webhook payload an Alertmanager receiver sends. Pure: the
clock is a parameter; no I/O.

One posted alert ``{labels, annotations, startsAt, endsAt, generatorURL}`` becomes one
AlertEvent (``AlertmanagerMapping`` says how; the routing file's ``[ingest.alertmanager]``
overrides it):

- ``fingerprint``: Alertmanager's own, ``model.LabelSet.Fingerprint()`` of prometheus/common
  (FNV-1a 64 over the label names, sorted, and values, each followed by the byte 0xff;
  ``%016x``), over the labels with an empty value left out, as Alertmanager leaves them out;
- ``type``: the ``alertname`` label, normalized to ``[a-z0-9_.-]{1,64}``
  (``KubePodCrashLooping`` → ``kube_pod_crash_looping``);
- ``severity``: the ``severity`` label (critical/page → 1, error/warning → 2, info and
  anything else → 3);
- ``summary``: the ``summary`` annotation, else ``description``, else the alertname;
- ``entity``: from labels (account_id ← ``account_id``, symbol ← ``instance``,
  strategy_id ← ``job``), each cut to 256 characters;
- ``details``: the labels, annotations, generatorURL, startsAt, endsAt and status;
- an ``endsAt`` at or before now (the webhook: ``status: resolved``) is a resolve of the
  fingerprint (``action: resolve``), which bypasses the throttle and resolves the alert;
- ``event_timestamp``: ``startsAt`` while firing, ``endsAt`` once resolved, so Prometheus's
  re-sends (every minute while firing, for 15 minutes once resolved) fall in the window of
  the first;
- ``alert_id``: derived from the fingerprint, ``startsAt``, ``endsAt`` and the status. A resolved alert
  sent again is the same alert_id, hence the same dedupe key and delivery ids: it is never
  delivered twice. A firing alert re-sent by Prometheus carries a later ``endsAt`` (its
  validity) each time: a repeat in the window of the first, suppressed and counted.

As Alertmanager does, every valid alert of a request is taken and the invalid ones are
answered with their reasons (400).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, Strict, ValidationError

from ..errors import RoutingError
from ..schemas.alert import ENTITY_MAX, FINGERPRINT_MAX, AlertEvent, parse_timestamp
from ..schemas.messages import NAMESPACE
from .config_model import Table, describe, invalid

# ----------------------------------------------------------------------- the fingerprint

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = (1 << 64) - 1
SEPARATOR = 0xFF


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint of a label set, as ``%016x`` (prometheus/common
    ``labelSetToFingerprint``): FNV-1a 64 over ``name 0xff value 0xff`` of every label,
    sorted by name (byte order, as Go's ``sort.Strings``). The empty set is the FNV offset."""
    h = _FNV_OFFSET
    for name in sorted(labels, key=lambda n: n.encode("utf-8", "surrogatepass")):
        for part in (name, labels[name]):
            for byte in part.encode("utf-8", "surrogatepass"):
                h = ((h ^ byte) * _FNV_PRIME) & _MASK
            h = ((h ^ SEPARATOR) * _FNV_PRIME) & _MASK
    return f"{h:016x}"


# ----------------------------------------------------------------------- the mapping

DEFAULT_SEVERITIES: Mapping[str, int] = MappingProxyType({
    "critical": 1, "page": 1, "sev1": 1, "1": 1,
    "error": 2, "warning": 2, "sev2": 2, "2": 2,
    "info": 3, "sev3": 3, "3": 3,
})
DEFAULT_ENTITY: Mapping[str, str] = MappingProxyType(
    {"account_id": "account_id", "symbol": "instance", "strategy_id": "job"})
ENTITY_FIELDS = ("account_id", "symbol", "strategy_id", "run_id")
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class AlertmanagerMapping:
    """How an Alertmanager alert's labels and annotations become an AlertEvent."""

    #: the label naming the type (normalized)
    type_label: str = "alertname"
    #: the type when that label is absent or nothing of it is left after normalizing
    default_type: str = "alertmanager"
    severity_label: str = "severity"
    #: label value (lower-cased, trimmed) → severity; any other value: ``default_severity``
    severities: Mapping[str, int] = field(default_factory=lambda: DEFAULT_SEVERITIES)
    default_severity: int = 3
    #: the annotations tried for the summary, in order; then the type label's value
    summary_annotations: tuple[str, ...] = ("summary", "description")
    #: entity field → the label it is taken from
    entity: Mapping[str, str] = field(default_factory=lambda: DEFAULT_ENTITY)


DEFAULT_MAPPING = AlertmanagerMapping()


def _label(v: Any) -> str:
    if not isinstance(v, str) or not _LABEL_NAME.match(v):
        raise invalid("a label name ([A-Za-z_][A-Za-z0-9_]*)")
    return v


def _label_or_none(v: Any) -> str:
    if v == "":
        return v  # "" maps the field from no label
    if not isinstance(v, str) or not _LABEL_NAME.match(v):
        raise invalid('a label name, or "" for none')
    return v


def _type_name(v: Any) -> str:
    if not isinstance(v, str) or not re.fullmatch(r"[a-z0-9_.-]{1,64}", v):
        raise invalid("a type: [a-z0-9_.-]{1,64}")
    return v


def _severity(v: Any) -> int:
    if isinstance(v, bool) or v not in (1, 2, 3):
        raise invalid("1, 2 or 3")
    return int(v)


def _entity_field(k: Any) -> str:
    if k not in ENTITY_FIELDS:
        raise invalid(f"not an entity field ({', '.join(ENTITY_FIELDS)})")
    return str(k)


LabelName = Annotated[str, BeforeValidator(_label)]
Severity = Annotated[int, BeforeValidator(_severity)]


class MappingFile(Table):
    """The routing file's ``[ingest.alertmanager]``: what it changes of ``DEFAULT_MAPPING``
    (``severities`` and ``entity`` add to the defaults; an entity field mapped to ``""`` is
    taken from no label)."""

    type_label: LabelName = DEFAULT_MAPPING.type_label
    default_type: Annotated[str, BeforeValidator(_type_name)] = DEFAULT_MAPPING.default_type
    severity_label: LabelName = DEFAULT_MAPPING.severity_label
    severities: dict[Annotated[str, BeforeValidator(lambda k: str(k).strip().lower())], Severity] = Field(
        default_factory=dict, description="a table of label value = 1, 2 or 3")
    default_severity: Severity = DEFAULT_MAPPING.default_severity
    summary_annotations: tuple[Annotated[str, Strict(), Field(min_length=1)], ...] = Field(
        default=DEFAULT_MAPPING.summary_annotations, description="a list of annotation names")
    entity: dict[Annotated[str, BeforeValidator(_entity_field)], Annotated[str, BeforeValidator(_label_or_none)]] = (
        Field(default_factory=dict, description="a table of entity field = label name"))

    def mapping(self) -> AlertmanagerMapping:
        entity = {**DEFAULT_MAPPING.entity, **self.entity}
        return AlertmanagerMapping(
            self.type_label, self.default_type, self.severity_label,
            MappingProxyType({**DEFAULT_MAPPING.severities, **self.severities}), self.default_severity,
            self.summary_annotations, MappingProxyType({k: v for k, v in entity.items() if v}))


MAPPING_KEYS = tuple(MappingFile.model_fields)


def parse_mapping(doc: Any, where: str = "ingest.alertmanager") -> AlertmanagerMapping:
    """The ``[ingest.alertmanager]`` table of the routing file; errors name the key."""
    try:
        return MappingFile.model_validate(doc).mapping()
    except ValidationError as exc:
        raise RoutingError("TOCSIN_ROUTING_FILE", describe(exc, MappingFile, tuple(where.split(".")))) from None


_CAMEL_1 = re.compile(r"([a-z0-9])([A-Z])")
_CAMEL_2 = re.compile(r"([A-Z]+)([A-Z][a-z])")
_NOT_TYPE = re.compile(r"[^a-z0-9_.-]+")


def normalize_type(name: str) -> str:
    """An alertname as a Tocsin type ``[a-z0-9_.-]{1,64}``: CamelCase split with ``_``,
    accents folded, lower-cased, every other character run made one ``_``; "" when nothing
    is left (``HighCPUUsage`` → ``high_cpu_usage``, ``disk full!`` → ``disk_full``)."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = _CAMEL_2.sub(r"\1_\2", _CAMEL_1.sub(r"\1_\2", text)).lower()
    text = _NOT_TYPE.sub("_", text).strip("_")
    return text[:64].strip("_")


def severity_of(value: str | None, mapping: AlertmanagerMapping = DEFAULT_MAPPING) -> int:
    """A severity label's value as 1..3 (absent or unknown: the mapping's default)."""
    if value is None:
        return mapping.default_severity
    return mapping.severities.get(value.strip().lower(), mapping.default_severity)


# ----------------------------------------------------------------------- one alert


class BadAlert(ValueError):
    """Why one posted alert cannot be taken (the reason a 400 gives)."""


#: Go's zero time, what Alertmanager writes for an unset startsAt/endsAt
_GO_ZERO_YEAR = 1


def _time(raw: dict[str, Any], key: str) -> dt.datetime | None:
    v = raw.get(key)
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise BadAlert(f"{key}: expected an RFC 3339 time, got {type(v).__name__}")
    try:
        t = parse_timestamp(v)
    except ValueError:
        raise BadAlert(f"{key}: {v[:60]!r} is not an RFC 3339 time with an offset") from None
    return None if t.year == _GO_ZERO_YEAR else t


def _string_map(raw: dict[str, Any], key: str) -> dict[str, str]:
    v = raw.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise BadAlert(f"{key}: expected an object of strings, got {type(v).__name__}")
    for name, value in v.items():
        if not isinstance(value, str):
            raise BadAlert(f"{key}.{name[:60]}: expected a string, got {type(value).__name__}")
        if not name:
            raise BadAlert(f"{key}: a name may not be empty")
    return v


def _iso(t: dt.datetime | None) -> str | None:
    return t.isoformat().replace("+00:00", "Z") if t is not None else None


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def map_alert(raw: Any, now: dt.datetime, mapping: AlertmanagerMapping = DEFAULT_MAPPING, *,
              source: str, max_future_skew_s: float = 300.0, status: str | None = None,
              given_fingerprint: str | None = None, extra: Mapping[str, Any] | None = None) -> AlertEvent:
    """One posted alert as an AlertEvent at the time ``now``; ``BadAlert`` says why not.

    ``status`` (the webhook's ``firing``/``resolved``) decides the resolution where given;
    otherwise an ``endsAt`` at or before ``now`` does. ``given_fingerprint`` (the webhook's)
    is kept as it is; otherwise the labels' is computed. ``extra`` is added to the details."""
    if not isinstance(raw, dict):
        raise BadAlert(f"expected an alert object, got {type(raw).__name__}")
    labels = {k: v for k, v in _string_map(raw, "labels").items() if v != ""}  # as Alertmanager
    annotations = _string_map(raw, "annotations")
    if not labels:
        raise BadAlert("at least one label pair required")
    starts, ends = _time(raw, "startsAt"), _time(raw, "endsAt")
    if starts is None:
        starts = ends if ends is not None else now
    if ends is not None and ends < starts:
        raise BadAlert("start time must be before end time")
    ahead = (starts - now).total_seconds()
    if ahead > max_future_skew_s:
        raise BadAlert(f"startsAt: {_iso(starts)} is {ahead:,.0f} s ahead of this worker's clock, "
                       f"over the {max_future_skew_s:g} s limit (TOCSIN_MAX_FUTURE_SKEW_S)")
    generator = raw.get("generatorURL")
    if generator is not None and not isinstance(generator, str):
        raise BadAlert(f"generatorURL: expected a string, got {type(generator).__name__}")
    if status is not None and status not in ("firing", "resolved"):
        raise BadAlert(f"status: {status[:40]!r} is not firing or resolved")
    resolved = status == "resolved" if status is not None else (ends is not None and ends <= now)
    fp = given_fingerprint or fingerprint(labels)
    if len(fp) > FINGERPRINT_MAX:
        raise BadAlert(f"fingerprint: over {FINGERPRINT_MAX} characters")

    name = labels.get(mapping.type_label, "")
    type_ = normalize_type(name) or mapping.default_type
    summary = next((annotations[a].strip() for a in mapping.summary_annotations if annotations.get(a, "").strip()),
                   name.strip() or type_)
    entity = {f: _cut(labels[lbl], ENTITY_MAX) for f, lbl in mapping.entity.items() if labels.get(lbl)}
    when = (ends or now) if resolved else starts
    details: dict[str, Any] = {"labels": labels, "annotations": annotations, "status": "resolved" if resolved else "firing",
                               "startsAt": _iso(starts), "endsAt": _iso(ends), "fingerprint": fp}
    if generator:
        details["generatorURL"] = generator
    if extra:
        details.update(extra)
    data = {
        # the status is part of it: the same startsAt/endsAt posted once firing (endsAt still
        # ahead) and once resolved (endsAt passed) are two alerts, not one recorded twice
        "alert_id": uuid.uuid5(NAMESPACE, f"alertmanager/{fp}/{_iso(starts)}/{_iso(ends) or ''}"
                                          f"/{'resolved' if resolved else 'firing'}"),
        "type": type_,
        "severity": severity_of(labels.get(mapping.severity_label), mapping),
        "event_timestamp": when,
        "fingerprint": fp,
        "entity": entity,
        "summary": summary,
        "details": details,
        "source": source,
        "action": "resolve" if resolved else "trigger",
        "resolves": fp if resolved else None,
    }
    try:
        return AlertEvent.model_validate(data)
    except ValidationError as exc:  # defensive: the mapping above keeps every rule
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first.get("loc", ())) or "alert"
        raise BadAlert(f"{loc}: {first.get('msg', 'invalid')}") from None


@dataclass
class Mapped:
    """The events of one request and the reasons of the alerts that were not taken."""

    events: list[AlertEvent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


#: most reasons one answer lists
MAX_REASONS = 20


def _collect(items: list[Any], one: Any) -> Mapped:
    out = Mapped()
    bad = 0
    for i, item in enumerate(items):
        try:
            out.events.append(one(item))
        except BadAlert as exc:
            bad += 1
            if len(out.errors) < MAX_REASONS:
                out.errors.append(f"alert {i}: {exc}")
    if bad > MAX_REASONS:
        out.errors.append(f"... and {bad - MAX_REASONS} more invalid alerts")
    return out


def map_postable(data: Any, now: dt.datetime, mapping: AlertmanagerMapping = DEFAULT_MAPPING, *,
                 source: str = "alertmanager_api", max_future_skew_s: float = 300.0) -> Mapped:
    """The body of ``POST /api/v2/alerts`` (and ``/api/v1/alerts``): a JSON array of alerts.
    A body that is not an array raises ``BadAlert``."""
    if not isinstance(data, list):
        raise BadAlert(f"expected a JSON array of alerts, got {type(data).__name__}")
    return _collect(data, lambda a: map_alert(a, now, mapping, source=source, max_future_skew_s=max_future_skew_s))


def map_webhook(data: Any, now: dt.datetime, mapping: AlertmanagerMapping = DEFAULT_MAPPING, *,
                max_future_skew_s: float = 300.0) -> Mapped:
    """An Alertmanager webhook payload (``version: "4"``): each alert with its own status and
    fingerprint. A payload that is not one raises ``BadAlert``."""
    if not isinstance(data, dict):
        raise BadAlert(f"expected a webhook payload object, got {type(data).__name__}")
    alerts = data.get("alerts")
    if not isinstance(alerts, list):
        raise BadAlert("alerts: expected an array")
    extra: dict[str, Any] = {}
    for key in ("receiver", "groupKey", "externalURL"):
        v = data.get(key)
        if v is not None and not isinstance(v, str):
            raise BadAlert(f"{key}: expected a string, got {type(v).__name__}")
        if v:
            extra[key] = v[:1024]

    def one(a: Any) -> AlertEvent:
        if not isinstance(a, dict):
            raise BadAlert(f"expected an alert object, got {type(a).__name__}")
        status, fp = a.get("status"), a.get("fingerprint")
        if status is not None and not isinstance(status, str):
            raise BadAlert(f"status: expected a string, got {type(status).__name__}")
        if fp is not None and (not isinstance(fp, str) or not fp):
            raise BadAlert("fingerprint: expected a non-empty string")
        return map_alert(a, now, mapping, source="alertmanager_webhook", max_future_skew_s=max_future_skew_s,
                         status=status, given_fingerprint=fp, extra=extra)

    return _collect(alerts, one)
