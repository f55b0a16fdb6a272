"""A store whose inserts fail on purpose, with the real driver's own error, for a worker
started by a test.

The worker finds it through ``TOCSIN_RECORD_STORE_WRAPPER`` (agents/record.py), which names
``from_env`` here; ``faulty_env`` makes a worker's environment that does so (with this
checkout on ``PYTHONPATH``, so that the worker can import ``tests``) and says what fails:
the first ``faults`` inserts, and every insert while the file ``outage`` exists (an outage
the test starts and ends).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FAULTS_ENV = "TOCSIN_TEST_INSERT_FAULTS"
OUTAGE_ENV = "TOCSIN_TEST_OUTAGE_FILE"
#: the checkout, holding ``tests/``
ROOT = Path(__file__).resolve().parents[2]
#: a table that does not exist: ClickHouse refuses the insert, the driver raises its own error
NO_SUCH_TABLE = "tocsin.no_such_table_injected_fault"


class FaultyStore:
    """Wraps the real store: its first ``n`` inserts, and every insert while ``outage``
    exists, raise the real client's own error, by sending the real client an insert
    ClickHouse rejects. Everything else goes to the real store."""

    def __init__(self, store: Any, n: int, outage: Path | None = None) -> None:
        self._store = store
        self.remaining = n
        self.outage = outage

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def _failing(self) -> bool:
        if self.outage is not None and self.outage.exists():
            return True
        if self.remaining > 0:
            self.remaining -= 1
            return True
        return False

    def insert(self, table: str, rows: Any, dedup_token: str | None = None) -> Any:
        if self._failing():
            self._store.insert(NO_SUCH_TABLE, rows, dedup_token)
        return self._store.insert(table, rows, dedup_token)

    def insert_json(self, table: str, messages: Any, dedup_token: str | None = None) -> Any:
        if self._failing():
            self._store.insert_json(NO_SUCH_TABLE, messages, dedup_token)
        return self._store.insert_json(table, messages, dedup_token)


def from_env(store: Any) -> FaultyStore:
    """``store`` wrapped as ``TOCSIN_TEST_INSERT_FAULTS`` and ``TOCSIN_TEST_OUTAGE_FILE`` say
    (the value of ``TOCSIN_RECORD_STORE_WRAPPER`` that ``faulty_env`` sets)."""
    faults = int(os.environ.get(FAULTS_ENV, "0") or 0)
    outage = os.environ.get(OUTAGE_ENV) or None
    log.warning("%s=%d, %s=%s: inserts will fail on purpose", FAULTS_ENV, faults, OUTAGE_ENV, outage)
    return FaultyStore(store, faults, Path(outage) if outage else None)


def faulty_env(env: Mapping[str, str], *, faults: int = 0, outage: Path | None = None) -> dict[str, str]:
    """``env`` for a worker whose record agent writes through a ``FaultyStore``."""
    path = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    out = {**env, "PYTHONPATH": path, "TOCSIN_RECORD_STORE_WRAPPER": f"{__name__}:from_env",
           FAULTS_ENV: str(faults)}
    if outage is not None:
        out[OUTAGE_ENV] = str(outage)
    return out
