"""Tocsin's exceptions.

    TocsinError
     ├── ConfigError            bad configuration, named by its setting; fails at start
     │    └── RoutingError      the routing file is invalid
     ├── BrokerError            the embedded broker could not start or be reached
     ├── StoreError             ClickHouse could not be reached or refused a statement
     │    ├── ReadOnlyError     a write statement given to the read-only `tocsin sql`
     │    └── DataRefusedError  an insert's data refused as such: the same rows fail again
     ├── DeliveryError          a channel failed in a way its result cannot carry
     └── OutboxError            a record was not acknowledged by the broker (agents/outbox.py)
          ├── RecordRefused     refused for good (too large, corrupt): never sent again
          └── OutboxStopped     the worker stopped first: what made it stays unacknowledged
"""

from __future__ import annotations

from typing import Any


class TocsinError(Exception):
    """Base of every error Tocsin raises on purpose."""


class ConfigError(TocsinError):
    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


class RoutingError(ConfigError):
    """``loc``: the key path of the offending key (``("receivers", "email:risk", "failover")``),
    empty when none is named; ``tocsin check-config`` finds its line in the file."""

    def __init__(self, setting: str, message: str, loc: tuple[int | str, ...] = ()) -> None:
        super().__init__(setting, message)
        self.loc = loc


class BrokerError(TocsinError):
    pass


class StoreError(TocsinError):
    pass


class ReadOnlyError(StoreError):
    pass


class DataRefusedError(StoreError):
    """ClickHouse refused the data of an insert itself (it cannot parse it), or the driver
    could not write a value into its column: the same bytes would be refused again, so the
    caller must send them another way."""


class DeliveryError(TocsinError):
    pass


class OutboxError(TocsinError):
    pass


class RecordRefused(OutboxError):
    """Records refused for good; ``refused`` maps each one's index in the call to its error.
    Every other record of the call was acknowledged: ``acked`` holds where each went (None for
    the refused)."""

    def __init__(self, refused: dict[int, BaseException], acked: list[Any] | None = None) -> None:
        first = next(iter(refused.values()))
        super().__init__(f"{len(refused)} record(s) refused for good by the producer or the broker "
                         f"({type(first).__name__}: {first}); they are not sent again")
        self.refused = refused
        self.acked: list[Any] = acked if acked is not None else []


class OutboxStopped(OutboxError):
    pass
