"""A fact about inhibition, as ``P.inhibitions`` carries it (key: ``kind:fingerprint``).

Facts, not states: each says what one alert event made true at its event time, so a reader
folds them in any order into the same state (decisions/inhibit.InhibitIndex)::

    {"kind": "source", "fingerprint": "component_unhealthy:ACC1::", "at": "2026-05-01T12:00:00Z",
     "firing": true, "labels": {"type": "component_unhealthy", "account_id": "ACC1", ...},
     "made_by": "5b0c…"}
    {"kind": "target", "fingerprint": "order_rejected:ACC1::", "at": "2026-05-01T12:01:00Z",
     "firing": true, "rule": "component down mutes its order rejections", "alert": {…}, "made_by": "…"}

- ``source`` firing: an alert matching some rule's ``source_matchers`` fired at ``at``;
  not firing: it (or a recovery naming it in ``resolves``) resolved at ``at``.
- ``target`` firing: the alert was decided ``inhibited`` at ``at`` by ``rule``; ``alert`` is
  that event, re-injected when the inhibition ends. Not firing: the target resolved, or was
  released (its re-injected event decided), at ``at``.

No I/O here.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .alert import AlertEvent


class InhibitionFact(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: Literal["source", "target"]
    fingerprint: str = Field(min_length=1, max_length=512)
    #: the event time of the alert that made the fact
    at: dt.datetime
    firing: bool
    #: a source's labels (decisions/silence.labels_of), what the rules' ``equal`` compares
    labels: dict[str, str] = Field(default_factory=dict)
    #: a target's: the rule that inhibited (or released) it
    rule: str | None = None
    #: a firing target's: its inhibited event, re-injected when the inhibition ends
    alert: AlertEvent | None = None
    #: the alert id of the event that made it
    made_by: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.fingerprint}"
