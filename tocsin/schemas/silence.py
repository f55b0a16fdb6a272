"""A silence, as Alertmanager's API v2 shows it and as ``P.silences`` carries it (key: its id).

Each message on ``P.silences`` is one *version* of a silence: the whole silence as it was
set at ``updatedAt``. Its JSON is Alertmanager's ``gettableSilence`` without ``status``
(computed when shown) plus Tocsin's extension ``muteResolved``::

    {"id": "9f0c…", "matchers": [{"name": "alertname", "value": "DiskFull", "isRegex": false,
      "isEqual": true}], "startsAt": "2024-05-01T12:00:00.000Z", "endsAt": "2024-05-01T13:00:00.000Z",
     "createdBy": "alice", "comment": "disk swap", "updatedAt": "2024-05-01T12:00:00.000Z",
     "muteResolved": false}

Times are kept to the millisecond (what Alertmanager shows). No I/O here.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from .alert import parse_timestamp

#: bounds on what one silence may hold (a silence is read by every worker for every alert)
NAME_MAX = 256
VALUE_MAX = 1024
MATCHERS_MAX = 64
TEXT_MAX = 4096


def to_millis(t: dt.datetime) -> dt.datetime:
    """UTC, cut to the millisecond."""
    t = t.astimezone(dt.UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def iso_millis(t: dt.datetime) -> str:
    """``2024-05-01T12:00:00.000Z``, as Alertmanager writes a time."""
    return t.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SilenceMatcher(BaseModel):
    """Alertmanager's matcher: ``isEqual`` and ``isRegex`` give ``=``, ``!=``, ``=~``, ``!~``."""

    model_config = ConfigDict(extra="ignore", frozen=True, alias_generator=to_camel, populate_by_name=True)

    name: str = Field(min_length=1, max_length=NAME_MAX)
    value: str = Field(max_length=VALUE_MAX)
    is_regex: bool
    is_equal: bool = True

    @field_validator("is_regex", "is_equal", mode="before")
    @classmethod
    def _strict_bool(cls, v: Any) -> Any:
        if not isinstance(v, bool):
            raise ValueError("must be true or false")
        return v

    @property
    def op(self) -> str:
        if self.is_regex:
            return "=~" if self.is_equal else "!~"
        return "=" if self.is_equal else "!="

    def __str__(self) -> str:
        """As amtool writes it: ``name="value"``, a name that is not a classic label name quoted."""
        name = self.name if _LABEL_NAME.match(self.name) else f'"{_escape(self.name)}"'
        return f'{name}{self.op}"{_escape(self.value)}"'


_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _time(v: Any) -> Any:
    if isinstance(v, str | dt.datetime):
        return to_millis(parse_timestamp(v))
    return v


class Silence(BaseModel):
    """One version of a silence (``P.silences``, key ``id``)."""

    model_config = ConfigDict(extra="ignore", frozen=True, alias_generator=to_camel, populate_by_name=True)

    id: str = Field(min_length=1, max_length=NAME_MAX)
    matchers: tuple[SilenceMatcher, ...] = Field(min_length=1, max_length=MATCHERS_MAX)
    starts_at: dt.datetime
    ends_at: dt.datetime
    created_by: str = Field(default="", max_length=NAME_MAX)
    comment: str = Field(default="", max_length=TEXT_MAX)
    #: when this version was set; a version decides only for times at or after it
    updated_at: dt.datetime | None = None
    #: Tocsin's extension: mute the resolution of an alert whose firing was notified too
    mute_resolved: bool = False

    @field_validator("starts_at", "ends_at", "updated_at", mode="before")
    @classmethod
    def _times(cls, v: Any) -> Any:
        return _time(v)

    @model_validator(mode="after")
    def _updated(self) -> Silence:
        if self.updated_at is None:  # a hand-made version: it has decided from its start
            object.__setattr__(self, "updated_at", self.starts_at)
        return self  # one that ends before it starts silences nothing (the API refuses it: decisions/silence.py)

    @property
    def updated(self) -> dt.datetime:
        assert self.updated_at is not None  # set by the validator
        return self.updated_at

    def wire(self) -> dict[str, Any]:
        """The message on ``P.silences`` (camelCase, times as Alertmanager writes them)."""
        return {
            "id": self.id,
            "matchers": [m.model_dump(by_alias=True) for m in self.matchers],
            "startsAt": iso_millis(self.starts_at),
            "endsAt": iso_millis(self.ends_at),
            "createdBy": self.created_by,
            "comment": self.comment,
            "updatedAt": iso_millis(self.updated),
            "muteResolved": self.mute_resolved,
        }


__all__ = ["Silence", "SilenceMatcher", "iso_millis", "to_millis"]
