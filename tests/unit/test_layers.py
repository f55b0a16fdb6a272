"""The structure drawn by imports runs one way:

    schemas -> decisions -> core -> agents -> web -> streams -> tools -> cli      infra beside

A package imports only from its left (and ``tocsin.errors``), with one exception: ``tools``
(DLQ, replay, rebuild) runs beside the worker and needs neither its views nor its app;
``infra`` (ClickHouse, Kafka helpers, the embedded broker, the seam to Faust) is imported by
everything right of decisions and imports none of it but the settings' type. Every import counts for the direction: a function's own and a type
checker's (``if TYPE_CHECKING:``) too. No cycle among the modules of tocsin, nor among its
packages: the imports a module runs when it is imported (those outside functions) draw no
loop.

Each module is parsed with ``ast``; nothing is imported.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "tocsin"

#: what each package must not import (``cli`` and ``bench``, the benchmarks, stand above
#: everything and import what they like)
ABOVE = frozenset({"web", "streams", "tools", "cli", "bench"})
FORBIDDEN: dict[str, frozenset[str]] = {
    "schemas": frozenset({"decisions", "infra", "core", "agents"}) | ABOVE,
    "decisions": frozenset({"infra", "core", "agents"}) | ABOVE,
    "core": frozenset({"agents"}) | ABOVE,
    "agents": ABOVE,
    "infra": frozenset({"agents"}) | ABOVE,  # the settings' type only (core imports infra)
    "web": ABOVE - {"web"},
    "streams": frozenset({"tools", "cli", "bench"}),
    "tools": frozenset({"web", "streams", "cli", "bench"}),
}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the module imported (a package's __init__ for a name from it)
    line: int
    top: bool  # run when the module is imported


def module_name(path: Path) -> str:
    parts = ["tocsin", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"
            or isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(body: list[ast.stmt], top: bool):
    """Every import statement of ``body``, and whether it runs when the module is imported."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, top
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _statements(node.body, False)
        elif isinstance(node, ast.If):
            yield from _statements(node.body, top and not _type_checking(node.test))
            yield from _statements(node.orelse, top)
        else:  # a class body, try, with, for, match...: what is inside runs as its block does
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                for child in getattr(node, field, ()):
                    if isinstance(child, ast.stmt):
                        yield from _statements([child], top)
                    elif hasattr(child, "body"):  # an except handler, a match case
                        yield from _statements(child.body, top)


def imports_of(name: str) -> list[Import]:
    path = MODULES[name]
    package = name if is_package(name) else name.rpartition(".")[0]
    found = []
    for node, top in _statements(ast.parse(path.read_text(), str(path)).body, True):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from pkg import mod`` imports the module ``pkg.mod``; ``from pkg import name``, pkg
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module
                       for a in node.names]
        found += [Import(name, t, node.lineno, top) for t in dict.fromkeys(targets)
                  if t == "tocsin" or t.startswith("tocsin.")]
    return found


ALL = [imp for name in MODULES for imp in imports_of(name)]


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_modules_are_found() -> None:
    assert {"tocsin.schemas.alert", "tocsin.decisions.throttle", "tocsin.agents.throttle",
            "tocsin.streams.app"} <= set(MODULES)
    assert any(i.target == "tocsin.decisions.throttle" for i in ALL)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_run_one_way(package: str) -> None:
    wrong = [f"{MODULES[i.source].relative_to(ROOT.parent)}:{i.line} imports {i.target}"
             for i in ALL if layer(i.source) == package and layer(i.target) in FORBIDDEN[package]]
    assert not wrong, f"{package} may not import {', '.join(sorted(FORBIDDEN[package]))}:\n" + "\n".join(wrong)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_cycles_are_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle() -> None:
    edges: dict[str, set[str]] = {}
    for i in ALL:
        if i.top and i.target != i.source:
            edges.setdefault(i.source, set()).add(i.target)
    assert not cycles(edges)


def test_no_import_cycle_between_packages() -> None:
    """The packages too, over the same imports: modules that draw no loop can still tie two
    packages together (the agents importing ``streams.app`` for the Runtime, the app importing
    the agents' channels)."""
    edges: dict[str, set[str]] = {}
    for i in ALL:
        if i.top and layer(i.source) != layer(i.target):
            edges.setdefault(layer(i.source), set()).add(layer(i.target))
    assert not cycles(edges)
