"""ClickHouse recording: the store interface, versioned DDL and the analyst queries.

See README.md beside this file for the tables and the queries, written for analysts.
"""

from .client import DATABASE, Store, open_store, redact_dsn

__all__ = ["DATABASE", "Store", "open_store", "redact_dsn"]
