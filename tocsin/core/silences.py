"""Every silence, read by every worker from ``P.silences``: the ``SilenceView``.

Every version of a silence is a message on ``P.silences`` (key: its id). Every worker reads
the whole topic from its beginning into a ``SilenceView`` (a plain consumer of its own, no
group), and the throttle asks it at each alert's event time (decisions/silence.py); the
throttle starts deciding once the view has read what the topic held when the worker started
(``wait_loaded``). The API that sets and lists silences is streams/silences.py.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import ValidationError

from ..decisions import silence as rules
from ..schemas.codec import loads
from ..schemas.silence import Silence
from .follow import READ_BACK_TIMEOUT_S, TopicView

__all__ = ["READ_BACK_TIMEOUT_S", "SilenceView", "wait_loaded"]

log = logging.getLogger(__name__)

#: longest the throttle waits, at start, for the view to read the topic before it decides
#: without it (a worker that cannot read P.silences still notifies)
LOAD_TIMEOUT_S = 60.0


class SilenceView(TopicView):
    """Every version of every silence, by id, in the topic's order (``versions``), and the same
    compiled for the throttle (``index``)."""

    what = "silences"

    def __init__(self, topic: str, model: type[Silence] = Silence) -> None:
        super().__init__(topic)
        #: what each message is read as (a ``MaintenanceWindow`` for ``P.maintenance``)
        self.model = model
        if model is not Silence:
            self.what = model.__name__.lower()
        self.versions: dict[str, list[Silence]] = {}
        self.index = rules.SilenceIndex()
        self._bad: set[tuple[int, int]] = set()

    def apply(self, version: Silence) -> None:
        versions = self.versions.setdefault(version.id, [])
        if version not in versions:  # the same version read again (the topic read again) changes nothing
            versions.append(version)
            self.index.set(version.id, versions)

    def take(self, partition: int, offset: int, value: bytes | None) -> None:
        """One message of the topic."""
        try:
            if value is None:
                raise ValueError("no value (a tombstone)")
            self.apply(self.model.model_validate(loads(value)))
        except (ValidationError, ValueError, TypeError) as exc:
            if (partition, offset) not in self._bad:
                self._bad.add((partition, offset))
                log.warning("%s/%d@%d is not a %s, ignored: %s", self.topic, partition, offset, self.model.__name__,
                            str(exc).replace("\n", " ")[:300])
        self.positions[partition] = offset + 1

    def count(self) -> int:
        return len(self.versions)

    def latest(self, silence_id: str) -> Silence | None:
        versions = self.versions.get(silence_id)
        return rules.latest(versions) if versions else None

    def shown(self) -> list[Silence]:
        return [rules.latest(v) for v in self.versions.values() if v]


async def wait_loaded(view: TopicView | None, timeout_s: float = LOAD_TIMEOUT_S) -> None:
    """For the throttle: wait until the view has read the topic (or ``timeout_s``)."""
    if view is None:
        return
    try:
        await asyncio.wait_for(view.loaded.wait(), timeout_s)
    except TimeoutError:
        log.error("%s: %s not read within %.0fs; deciding without them until it is", view.what, view.topic,
                  timeout_s)
