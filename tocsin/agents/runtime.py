"""What every agent is handed: a worker's ``Runtime``.

``streams/app.py`` builds it (``build(settings)``: the Faust app, its topics and tables, the
routing policy, the channels, the outbox) and registers the agents; each agent adds what it
holds (the delivery outbox, its readers, the store) and the web views read it from above.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import faust

from ..core.preferences import PreferenceView
from ..core.settings import Settings
from ..core.silences import SilenceView
from ..core.tables import Tables
from ..core.topics import Topics
from ..decisions.routing import RoutingPolicy
from .channels.base import Channel
from .outbox import Outbox

if TYPE_CHECKING:
    from ..infra.clickhouse.store import Store
    from .delivery.outbox import DeliveryOutbox
    from .reader import PartitionReader


@dataclass
class Runtime:
    settings: Settings
    app: faust.App
    topics: Topics
    tables: Tables
    policy: RoutingPolicy
    channels: dict[str, Channel]
    #: every record whose loss would lose a notification or a record goes out through it,
    #: acknowledged by the broker before the offset that made it is committed (agents/outbox.py)
    outbox: Outbox
    #: called with a destination whose circuit breaker closed again (its probe succeeded): the
    #: retry agent releases the commands waiting for it (agents/retry.py)
    on_breaker_closed: list[Callable[[str], None]] = field(default_factory=list)
    #: each delivery command's attempt, table write and follow-ups, acknowledged by the broker
    #: before the command is (agents/delivery/; made by its register, before any agent runs)
    delivery_outbox: DeliveryOutbox = field(init=False, repr=False)
    #: the readers of the alert and delivery topics (agents/reader.py), for their lag
    readers: list[PartitionReader] = field(default_factory=list)
    #: the ClickHouse store, once the record agent has opened it (None: not recording, or not yet)
    store: Store | None = None
    #: every silence, read from ``P.silences`` (core/silences.py; set by streams/silences.py)
    silences: SilenceView | None = None
    #: people's preferences set through the API, read from ``P.preferences`` (core/preferences.py;
    #: set by web/preferences.py)
    preferences: PreferenceView | None = None
    #: every one-off maintenance window, read from ``P.maintenance`` (set by web/maintenance.py)
    maintenance: SilenceView | None = None
    #: the worker has joined the group and recovered its tables once (streams/app.py)
    started: bool = False

    @property
    def enabled(self) -> list[str]:
        return sorted(self.channels)

    def ready(self) -> bool:
        """Joined the group and recovered the tables."""
        app = self.app
        try:
            recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        except AttributeError:
            return False
        return bool(recovered and not app.rebalancing and not getattr(app, "in_recovery", False)
                    and self.started)
