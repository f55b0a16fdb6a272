"""Untrusted analyst SQL (``tocsin sql``, ``POST /api/sql``) under ClickHouse's own guarantees.

No hand-written splitter decides what runs; ClickHouse's parser does, and Tocsin only reads
its answer:

1. **One statement.** ``formatQuerySingleLine`` parses the text as one query and refuses
   multi-statements (chdb would otherwise run every statement, the limits attached to the last
   one only). Its output, one line without comments, is what runs.
2. **What kind.** ``EXPLAIN AST`` of that line gives the tree: the root must be a SELECT (or
   WITH, UNION), SHOW TABLES/DATABASES, DESCRIBE, EXISTS or SHOW CREATE TABLE, or an EXPLAIN of
   a SELECT; a SELECT's ``INTO OUTFILE`` (a literal right under the query, which chdb writes
   to the worker's disk even read-only) is refused.
3. **What it touches.** Tables of the ``tocsin`` database and a few catalogue tables of
   ``system``; table functions only the generators (``numbers``, ``zeros``, ``values``,
   ``null``): ``file``, ``url``, ``remote``, ``s3``... are refused before anything runs, as is
   the scalar ``file()``, which reads files even in read-only mode.
4. **Limits the query cannot lift.** It runs with ``readonly = 1`` (ClickHouse then refuses any
   ``SETTINGS`` the text carries) and a time, result-row, result-byte and memory limit
   (``SqlLimits``). A server whose user is already read-only keeps its profile's limits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import ReadOnlyError, StoreError
from .migrations import DATABASE

#: root node kinds of ``EXPLAIN AST`` that only read
READ_KINDS = frozenset({
    "SelectWithUnionQuery", "ShowTables", "DescribeQuery", "ExistsTableQuery",
    "ShowCreateTableQuery", "Explain",
})

#: table functions that read nothing outside the query
SAFE_TABLE_FUNCTIONS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "values", "null",
                                  "generate_series", "generateseries"})

#: scalar functions that reach outside the database (files, dictionaries' sources, models)
DENIED_FUNCTIONS = frozenset({"file", "catboostevaluate", "getclienthttpheader"})
DENIED_PREFIXES = ("dictget", "dicthas", "dictisin")

#: catalogue tables of ``system`` an analyst may read
SYSTEM_TABLES = frozenset({"one", "numbers", "numbers_mt", "zeros", "zeros_mt", "tables", "columns",
                           "databases", "functions", "data_type_families", "table_functions"})

_LINE = re.compile(r"^( *)(\S+)(?: (.*?))?$")
_CHILDREN = re.compile(r" ?\(children \d+\)$")


@dataclass(frozen=True)
class SqlLimits:
    """What one analyst query may take. ``result_overflow_mode = 'throw'``: a cut answer
    would mislead, so a query over a limit fails with ClickHouse's reason."""

    max_execution_time_s: int = 10
    max_result_rows: int = 100_000
    max_result_bytes: int = 64 * 1024 * 1024
    max_memory_usage: int = 1024 * 1024 * 1024

    def settings(self) -> dict[str, Any]:
        return {
            "readonly": 1,
            "max_execution_time": self.max_execution_time_s,
            "timeout_overflow_mode": "throw",
            "max_result_rows": self.max_result_rows,
            "max_result_bytes": self.max_result_bytes,
            "result_overflow_mode": "throw",
            "max_memory_usage": self.max_memory_usage,
        }


@dataclass
class Node:
    kind: str
    text: str
    children: list[Node]


def parse_ast(lines: list[str]) -> Node:
    """The tree ``EXPLAIN AST`` prints, one node a line, children indented by one space."""
    root: Node | None = None
    stack: list[tuple[int, Node]] = []
    for line in lines:
        m = _LINE.match(line.rstrip())
        if not m:
            continue
        depth, node = len(m.group(1)), Node(m.group(2), _CHILDREN.sub("", m.group(3) or ""), [])
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            stack[-1][1].children.append(node)
        elif root is None:
            root = node
        stack.append((depth, node))
    if root is None:
        raise ReadOnlyError("empty query")
    return root


def _walk(node: Node, parent: Node | None = None) -> Any:
    yield node, parent
    for child in node.children:
        yield from _walk(child, node)


def check_tree(root: Node) -> None:
    """``ReadOnlyError`` saying why, unless the parsed query only reads what it may."""
    if root.kind not in READ_KINDS:
        raise ReadOnlyError(
            f"read-only: only SELECT, WITH, SHOW TABLES, DESCRIBE, EXISTS, SHOW CREATE TABLE and "
            f"EXPLAIN are allowed, not {root.kind.removesuffix('Query')}")
    if root.kind == "Explain":
        inner = [c for c in root.children if c.kind != "Identifier"]
        if not inner or any(c.kind != "SelectWithUnionQuery" for c in inner):
            raise ReadOnlyError("read-only: EXPLAIN only of a SELECT")
    for node, parent in _walk(root):
        if node.kind == "SelectWithUnionQuery" and any(c.kind == "Literal" for c in node.children):
            raise ReadOnlyError("read-only: INTO OUTFILE is not allowed")
        if node.kind == "Function":
            name = node.text.split(" ", 1)[0].lower()
            if parent is not None and parent.kind == "TableExpression":
                if name not in SAFE_TABLE_FUNCTIONS:
                    raise ReadOnlyError(f"read-only: the table function {name}() is not allowed")
            elif name in DENIED_FUNCTIONS or name.startswith(DENIED_PREFIXES):
                raise ReadOnlyError(f"read-only: the function {name}() is not allowed")
        if node.kind == "TableIdentifier":
            _check_table(node.text.split(" ", 1)[0])


def _check_table(name: str) -> None:
    if "." not in name:
        return  # the connection's own database
    db, _, table = name.partition(".")
    if db.strip("`\"") == DATABASE:
        return
    if db.strip("`\"") == "system" and table.strip("`\"").lower() in SYSTEM_TABLES:
        return
    raise ReadOnlyError(f"read-only: only the {DATABASE} database's tables may be read, not {name}")


Query = Callable[[str, Mapping[str, Any] | None, Mapping[str, Any] | None], tuple[list[str], list[tuple[Any, ...]]]]


def guarded(query: Query, sql: str, settings: Mapping[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run untrusted ``sql`` through ``query(text, params, settings)`` as the module says."""
    if not sql.strip():
        raise ReadOnlyError("empty query")
    try:
        _, rows = query("SELECT formatQuerySingleLine({q:String})", {"q": sql}, settings)
    except StoreError as exc:
        raise ReadOnlyError(_reason(str(exc))) from None
    line = str(rows[0][0])
    try:
        _, ast = query("EXPLAIN AST " + line, None, settings)
    except StoreError as exc:
        raise ReadOnlyError(_reason(str(exc))) from None
    check_tree(parse_ast([str(r[0]) for r in ast]))
    return query(line, None, settings)


def _reason(message: str) -> str:
    """ClickHouse's parse error, without the wrapper query it was found in."""
    if "Multi-statements are not allowed" in message:
        return "one statement at a time, please"
    return message.split(": In scope", 1)[0]
