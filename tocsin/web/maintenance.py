"""One-off maintenance windows: set, listed and expired as silences are (web/silences.py).

``GET    /api/maintenance``        every window (``filter=<matcher>``, ``active``, ``pending``, ``expired``)
``POST   /api/maintenance``        set one: ``{"windowID": ...}``; with an ``id``, updated in place where
                                   that cannot rewrite the past, else the old one expires and a new one is made
``GET    /api/maintenance/{id}``   one window
``DELETE /api/maintenance/{id}``   expire it

Reading is the read surface, writing needs the API token (web/auth.py). Every version of a
window is a message on ``P.maintenance`` (key: its id), read by every worker into a
``SilenceView`` of ``MaintenanceWindow`` (``rt.maintenance``), which the throttle asks at each
alert's event time (agents/maintenance.py). A write answers once this worker has read it back.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..agents.runtime import Runtime
from ..core.follow import follow
from ..core.silences import SilenceView
from ..schemas.maintenance import MaintenanceWindow
from . import silences
from .silences import BadSilence

__all__ = ["BadSilence", "gettable", "postable", "query", "register"]

#: what a posted window may not say, and why
REFUSED = {"muteResolved": "a maintenance window never mutes the recovery of a notified alert"}


def gettable(w: MaintenanceWindow, now: dt.datetime) -> dict[str, Any]:
    """A silence's answer (web/silences.py) with the window's name after its id, and no ``muteResolved``."""
    shown = silences.gettable(w, now)
    return {"id": shown.pop("id"), "name": w.name, **{k: v for k, v in shown.items() if k != "muteResolved"}}


def postable(raw: bytes) -> tuple[str | None, MaintenanceWindow]:
    """A posted window: its id (None for a new one) and the window it asks for."""
    return silences.postable(raw, MaintenanceWindow, "a maintenance window", REFUSED)


def query(windows: list[MaintenanceWindow], filters: list[str], states: dict[str, bool],
          now: dt.datetime) -> list[dict[str, Any]]:
    """The windows matching every filter (a filter is one of a window's matchers), active
    first, then pending, then expired."""
    return silences.query(windows, filters, states, now, gettable)


def register(rt: Runtime) -> None:
    app = rt.app
    view = rt.maintenance = SilenceView(rt.topics.maintenance.get_topic_name(), MaintenanceWindow)

    @app.task
    async def _read_maintenance() -> None:
        await follow(view, rt.settings, lambda: bool(app.should_stop))

    silences.pages(rt, view, "/api/maintenance", "/api/maintenance/{window_id}", id_key="windowID",
                   noun="maintenance window", nouns="maintenance windows", show=gettable, read=postable)
