"""ClickHouse recording: the store interface, versioned DDL and the analyst queries.

- ``store.py``: ``Store`` (insert, query, migrate, close) and ``open_store(dsn)``
- ``url.py``: ``TOCSIN_CLICKHOUSE_URL`` parsed into a ``Target``, and redacted
- ``engines.py``: the clients behind a store (the one chdb engine per process, a server's)
- ``driver_errors.py``: a driver error as one redacted line; refused data told apart
- ``migrations.py``: the numbered DDL files (``NNN_*.sql`` beside it) and their applying
- ``readonly.py``: untrusted analyst SQL under ClickHouse's own guarantees
- ``queries.py``: the analyst queries (``queries/*.sql``) by name; ``ops.py``: ``tocsin stats``

The tables and the queries, written for analysts: "Analyst queries" in the README.
"""
