"""A one-off maintenance window, as ``P.maintenance`` carries it (key: its id) and the API shows it.

A window is a silence with a name (``schemas/silence.py``: the same matchers, times and
versions), kept on a topic of its own and deciding ``muted``, not ``silenced``. It never
mutes the recovery of an alert notified before it, so it has no ``muteResolved``::

    {"id": "3b1e…", "name": "orders db upgrade", "matchers": [{"name": "service", "value": "orders",
      "isRegex": false, "isEqual": true}], "startsAt": "2026-05-02T22:00:00.000Z",
     "endsAt": "2026-05-03T02:00:00.000Z", "createdBy": "alice", "comment": "CHG-1234",
     "updatedAt": "2026-05-01T09:00:00.000Z"}

No I/O here.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from .silence import NAME_MAX, Silence


class MaintenanceWindow(Silence):
    """One version of a one-off maintenance window (``P.maintenance``, key ``id``)."""

    name: str = Field(default="", max_length=NAME_MAX)

    @model_validator(mode="after")
    def _never_mutes_resolved(self) -> MaintenanceWindow:
        if self.mute_resolved:
            raise ValueError("a maintenance window never mutes the recovery of a notified alert (no muteResolved)")
        return self

    def wire(self) -> dict[str, Any]:
        out = super().wire()
        del out["muteResolved"]
        return {"id": out.pop("id"), "name": self.name, **out}


__all__ = ["MaintenanceWindow"]
