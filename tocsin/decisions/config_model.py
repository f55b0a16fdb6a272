"""Configuration files as pydantic models whose errors name the key: ``Table`` (a TOML table:
unknown keys refused) and ``describe``, which makes a ``ValidationError`` one line, the key's
dotted path and what is expected there::

    receivers.webhook:default.max_age_s: seconds, a number > 0 and <= 2592000 (30 days)

What is expected is said once, where the type is declared: the ``description`` of a field or
of an ``Annotated`` type (the innermost one along the path wins); a check of our own raises
``invalid(...)`` with its message. The value given is never repeated (it may be a secret).

``explain`` gives every error so, each with its key path; ``line_of`` finds the line of a
TOML document that defines a key path (TOML parsers give no positions), for
``tocsin check-config``'s ``file:line: message``.
"""

from __future__ import annotations

import json
import re
import tomllib
import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

#: the error type of the checks of our own (their message is said as it is)
INVALID = "tocsin_invalid"
#: the errors of a value that is not a table
_TABLE_TYPES = ("model_type", "model_attributes_type", "dict_type", "mapping_type")
#: a key written as it is in a path; any other is quoted
_BARE_KEY = re.compile(r"[\w:.+-]+")


class Table(BaseModel):
    """A table of a configuration file: its keys are the fields; any other key is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def invalid(message: str, **ctx: Any) -> PydanticCustomError:
    """An error of a check of our own, ``message`` formatted with ``ctx`` (``{name}``)."""
    return PydanticCustomError(INVALID, message, {k: str(v) for k, v in ctx.items()} or None)


def path(loc: tuple[int | str, ...]) -> str:
    """``("receivers", "email:risk", "failover", 0)`` → ``receivers.email:risk.failover[0]``; a
    key of other characters quoted (``severity." 2"``)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        key = part if _BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)
        out += f".{key}" if out else key
    return out


Loc = tuple[int | str, ...]


def explain(exc: ValidationError, root: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[Loc, str]]:
    """Every error of ``exc`` (validating ``root``; unknown keys before the others) as its key
    path and what is expected there."""
    out: list[tuple[Loc, str]] = []
    errors = exc.errors(include_url=False, include_input=False)
    for err in sorted(errors, key=lambda e: e["type"] != "extra_forbidden"):  # a misspelt key first
        loc = tuple(p for p in err["loc"] if p != "[key]")  # a mapping's key: named by itself
        if err["type"] == INVALID:
            what = err["msg"]
        elif err["type"] == "extra_forbidden":
            _, parent = _walk(root, loc[:-1])
            known = ", ".join(parent.model_fields) if _is_model(parent) else ""
            what = f"unknown key (known: {known})" if known else "unknown key"
        else:
            what = _walk(root, loc)[0] or ("expected a table" if err["type"] in _TABLE_TYPES else err["msg"])
        out.append((prefix + loc, what))
    return out


def describe(exc: ValidationError, root: type[BaseModel], prefix: tuple[str, ...] = ()) -> str:
    """The first error of ``explain`` as ``path: what is expected``, and how many more there are."""
    errors = explain(exc, root, prefix)
    loc, what = errors[0]
    more = len(errors) - 1
    where = path(loc)
    return (f"{where}: " if where else "") + what + (f" (and {more} more error{'s' * (more > 1)})" if more else "")


def _is_model(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, BaseModel)


def _unwrap(t: Any, said: str | None) -> tuple[Any, str | None]:
    """``t`` without ``Annotated`` and ``| None``, and the description it carries (or ``said``)."""
    while True:
        if get_origin(t) is Annotated:
            t, *meta = get_args(t)
            said = next((m.description for m in meta if isinstance(m, FieldInfo) and m.description), said)
        elif get_origin(t) in (Union, types.UnionType):
            t = next(a for a in get_args(t) if a is not type(None))
        else:
            return t, said


def _walk(root: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[str | None, Any]:
    """Down ``loc`` from ``root``: the innermost description on the way, and the type reached."""
    t, said = root, None
    for part in loc:
        t, said = _unwrap(t, said)
        if _is_model(t):
            field = t.model_fields.get(str(part))
            if field is None:
                return said, None
            said, t = field.description or said, field.annotation
        elif get_origin(t) in (dict, Mapping):
            t = get_args(t)[1]
        elif get_origin(t) in (list, tuple):
            t = get_args(t)[0]
        else:
            return said, None
    t, said = _unwrap(t, said)
    return said, t


# ------------------------------------------------------------------ where a key is in a TOML text

#: one key of a dotted key: bare, "basic" (with escapes) or 'literal'
_KEY_PART = re.compile(r"""\s*(?:([A-Za-z0-9_-]+)|("(?:[^"\\\n]|\\.)*")|('[^'\n]*'))\s*""")


def _unquote(key: str) -> str:
    if key.startswith("'"):
        return key[1:-1]
    try:
        return str(tomllib.loads(f"k = {key}")["k"])  # TOML's escapes, as TOML reads them
    except tomllib.TOMLDecodeError:
        return key[1:-1]


def _dotted(line: str, pos: int) -> tuple[tuple[str, ...], int] | None:
    """The dotted key at ``line[pos:]`` and where it ends (spaces after it skipped), or None."""
    keys: list[str] = []
    while True:
        m = _KEY_PART.match(line, pos)
        if m is None:
            return None
        bare, quoted = m.group(1), m.group(2) or m.group(3)
        keys.append(bare if bare is not None else _unquote(quoted))
        pos = m.end()
        if not line.startswith(".", pos):
            return tuple(keys), pos
        pos += 1


def _scan(line: str, pos: int, depth: int, closing: str | None) -> tuple[int, str | None]:
    """After ``line[pos:]``, a value's bracket depth and the delimiter of a multi-line string
    left open (strings and comments skipped): what the next lines continue."""
    i, n = pos, len(line)
    if closing is not None:
        end = line.find(closing, i)
        if end < 0:
            return depth, closing
        i = end + 3
    while i < n:
        c = line[i]
        if c == "#":
            break
        if line.startswith(('"""', "'''"), i):
            end = line.find(line[i:i + 3], i + 3)
            if end < 0:
                return depth, line[i:i + 3]
            i = end + 3
            continue
        if c == '"':
            i += 1
            while i < n and line[i] != '"':
                i += 2 if line[i] == "\\" else 1
        elif c == "'":
            end = line.find("'", i + 1)
            i = end if end >= 0 else n
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        i += 1
    return depth, None


def line_of(text: str, loc: Sequence[int | str]) -> int | None:
    """The line (from 1) of the TOML document ``text`` that defines the key path ``loc`` (its
    positions in arrays ignored): the ``key =`` line or ``[table]`` header naming it; else the
    first line defining a key inside it (``[receivers]`` then ``webhook.max_attempts = 3``);
    else the line of the deepest table or key around it; None when no line does. Table
    headers, dotted and quoted keys and comments are read; what values span (arrays,
    multi-line strings) is skipped."""
    want = tuple(str(p) for p in loc if not isinstance(p, int))
    if not want:
        return None
    table: tuple[str, ...] = ()
    inside: int | None = None
    around, around_depth = None, 0
    depth, closing = 0, None
    for number, line in enumerate(text.splitlines(), 1):
        if depth > 0 or closing is not None:  # a value's continuation
            depth, closing = _scan(line, 0, depth, closing)
            continue
        header = line.lstrip().startswith("[")
        start = line.index("[") + (2 if line.lstrip().startswith("[[") else 1) if header else 0
        parsed = _dotted(line, start)
        if parsed is None:
            continue
        keys, end = parsed
        if header:
            table = defined = keys
        elif line.startswith("=", end):
            defined = table + keys
            depth, closing = _scan(line, end + 1, 0, None)
        else:
            continue
        if defined == want:
            return number
        if defined[:len(want)] == want:
            inside = inside or number
        elif want[:len(defined)] == defined and len(defined) > around_depth:
            around, around_depth = number, len(defined)
    return inside or around
