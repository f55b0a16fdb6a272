"""Every inhibition fact, read by every worker from ``P.inhibitions``: the ``InhibitView``.

An inhibition crosses fingerprints, so partitions: the source (``component_unhealthy`` of an
account) and its targets (that account's ``order_rejected``) are decided by whichever workers
own their partitions. So, as silences are (core/silences.py, whose reading loop this reuses),
every worker reads the whole topic from its beginning into its ``InhibitIndex``
(decisions/inhibit.py), and the throttle asks it at each alert's event time; the throttle
starts deciding once the view has read what the topic held when the worker started.

The facts a worker's throttle makes are folded into its view at once (``apply``) as well as
sent, so the next event of the same batch sees them; read back from the topic they change
nothing (a fact folds in once, in any order).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pydantic import ValidationError

from ..decisions.inhibit import FORGET_EVERY, InhibitIndex, InhibitRule
from ..schemas.codec import loads
from ..schemas.inhibit import InhibitionFact
from .follow import TopicView

log = logging.getLogger(__name__)

#: a fact's alert was sanitized once already, by the throttle that made it (schemas/alert.py)
INTERNAL = {"internal": True}


class InhibitView(TopicView):
    """The facts of ``P.inhibitions`` folded into ``index`` (decisions/inhibit.InhibitIndex)."""

    what = "inhibitions"

    def __init__(self, topic: str, rules: Iterable[InhibitRule]) -> None:
        super().__init__(topic)
        self.index = InhibitIndex(rules)
        self.facts = 0
        self._bad: set[tuple[int, int]] = set()

    def count(self) -> int:
        return self.facts

    def apply(self, fact: InhibitionFact) -> None:
        if self.index.apply(fact):
            self.facts += 1
            if self.facts % FORGET_EVERY == 0:  # bounded: what can change no decision goes
                self.index.forget()

    def take(self, partition: int, offset: int, value: bytes | None) -> None:
        try:
            if value is None:
                raise ValueError("no value (a tombstone)")
            self.apply(InhibitionFact.model_validate(loads(value), context=INTERNAL))
        except (ValidationError, ValueError, TypeError) as exc:
            if (partition, offset) not in self._bad:
                self._bad.add((partition, offset))
                log.warning("%s/%d@%d is not an inhibition fact, ignored: %s", self.topic, partition, offset,
                            str(exc).replace("\n", " ")[:300])
        self.positions[partition] = offset + 1
