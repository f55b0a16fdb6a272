"""Tocsin's exceptions.

    TocsinError
     ├── ConfigError            bad configuration, named by its setting; fails at start
     │    └── RoutingError      the routing file is invalid
     ├── BrokerError            the embedded broker could not start or be reached
     ├── StoreError             ClickHouse could not be reached or refused a statement
     │    └── ReadOnlyError     a write statement given to the read-only `tocsin sql`
     └── DeliveryError          a channel failed in a way its result cannot carry
"""

from __future__ import annotations


class TocsinError(Exception):
    """Base of every error Tocsin raises on purpose."""


class ConfigError(TocsinError):
    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


class RoutingError(ConfigError):
    pass


class BrokerError(TocsinError):
    pass


class StoreError(TocsinError):
    pass


class ReadOnlyError(StoreError):
    pass


class DeliveryError(TocsinError):
    pass
