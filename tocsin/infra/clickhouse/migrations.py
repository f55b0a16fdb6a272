"""The schema: the numbered DDL files beside this module (``NNN_name.sql``) and their applying.

Every statement of a file is ``IF NOT EXISTS``, and the versions applied are kept in
``tocsin.schema_migrations`` with a checksum of their text, so applying twice, or from two
workers starting together, is harmless. A file changed after it was applied is logged, not
applied again: a change is a new file. The same files run on a server and on chdb.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger(__name__)

#: the database the DDL files create; their tables are named ``tocsin.<table>``
DATABASE = "tocsin"
MIGRATIONS_DIR = Path(__file__).parent
MIGRATION_RE = re.compile(r"^(\d{3})_[A-Za-z0-9_]+\.sql$")


def migration_files() -> list[tuple[int, Path]]:
    """The versioned DDL files, in order."""
    found = []
    for path in MIGRATIONS_DIR.iterdir():
        m = MIGRATION_RE.match(path.name)
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found)


def apply(store: Store) -> list[str]:
    """Apply the DDL files not yet applied on ``store``; return the names applied now."""
    store.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    store.command(
        f"CREATE TABLE IF NOT EXISTS {DATABASE}.schema_migrations "
        "(version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    _, rows = store.query(f"SELECT version, checksum FROM {DATABASE}.schema_migrations FINAL")
    applied = {int(v): c for v, c in rows}
    done: list[str] = []
    for version, path in migration_files():
        text = path.read_text(encoding="utf-8")
        checksum = hashlib.sha256(text.encode()).hexdigest()[:16]
        if version in applied:
            if applied[version] != checksum:
                log.warning("migration %s changed after it was applied; add a new file instead", path.name)
            continue
        log.info("ClickHouse %s: applying %s", store.redacted, path.name)
        for stmt in split_statements(text):
            store.command(stmt)
        store.insert("schema_migrations", [{"version": version, "name": path.name, "checksum": checksum}])
        done.append(path.name)
    return done


def applied_versions(store: Store) -> list[int]:
    """The versions applied on ``store``, in order."""
    _, rows = store.query(f"SELECT version FROM {DATABASE}.schema_migrations FINAL ORDER BY version")
    return [int(r[0]) for r in rows]


# --------------------------------------------------------------------------- SQL text


def split_statements(sql: str) -> list[str]:
    """The statements of a DDL file: ``--`` and ``/* */`` comments outside string literals
    removed, split on ``;``, the empty ones left out."""
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(sql)
    quote_char: str | None = None
    while i < n:
        ch = sql[i]
        if quote_char:
            current.append(ch)
            if ch == "\\" and i + 1 < n:
                current.append(sql[i + 1])
                i += 2
                continue
            if ch == quote_char:
                quote_char = None
            i += 1
            continue
        if ch in ("'", '"', "`"):
            quote_char = ch
            current.append(ch)
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
            continue
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
            current.append(" ")
            continue
        elif ch == ";":
            statements.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1
    statements.append("".join(current).strip())
    return [stmt for stmt in statements if stmt]
