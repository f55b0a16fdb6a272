"""The throttle's maintenance step: whether a maintenance window mutes an event (decisions/maintenance.py).

Asked after the silences and before everything else. Holds what the decision needs: the
routing file's recurring windows (``rt.policy.maintenance``) and the one-off windows every
worker reads from ``P.maintenance`` (``rt.maintenance``, set by web/maintenance.py).
"""

from __future__ import annotations

from collections.abc import Callable

from ..decisions.maintenance import muted_by
from ..schemas.alert import AlertEvent
from .runtime import Runtime


class Maintenance:
    def __init__(self, rt: Runtime, notified_before: Callable[[AlertEvent], bool]) -> None:
        self.rt = rt
        self.notified_before = notified_before

    def muted(self, event: AlertEvent) -> str | None:
        """Why a maintenance window mutes ``event`` at its event time (the reason), or None."""
        policy = self.rt.policy.maintenance
        view = self.rt.maintenance
        windows = view.index if view is not None and len(view.index) else None
        if not policy.rules and windows is None:
            return None
        return muted_by(policy, event, event.event_timestamp, lambda: self.notified_before(event), windows,
                        view.versions if view is not None else None)
