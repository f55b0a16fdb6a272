"""Configuration files as pydantic models whose errors name the key: ``Table`` (a TOML table:
unknown keys refused) and ``describe``, which makes a ``ValidationError`` one line, the key's
dotted path and what is expected there::

    receivers.webhook:default.max_age_s: seconds, a number > 0 and <= 2592000 (30 days)

What is expected is said once, where the type is declared: the ``description`` of a field or
of an ``Annotated`` type (the innermost one along the path wins); a check of our own raises
``invalid(...)`` with its message. The value given is never repeated (it may be a secret).
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Mapping
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


def describe(exc: ValidationError, root: type[BaseModel], prefix: tuple[str, ...] = ()) -> str:
    """The first error of ``exc`` (validating ``root``; an unknown key before any other) as
    ``path: what is expected``, and how many more there are."""
    errors = exc.errors(include_url=False, include_input=False)
    err = min(errors, key=lambda e: e["type"] != "extra_forbidden")  # a misspelt key first
    loc = tuple(p for p in err["loc"] if p != "[key]")  # a mapping's key: named by itself
    if err["type"] == INVALID:
        what = err["msg"]
    elif err["type"] == "extra_forbidden":
        _, parent = _walk(root, loc[:-1])
        known = ", ".join(parent.model_fields) if _is_model(parent) else ""
        what = f"unknown key (known: {known})" if known else "unknown key"
    else:
        what = _walk(root, loc)[0] or ("expected a table" if err["type"] in _TABLE_TYPES else err["msg"])
    more = len(errors) - 1
    where = path(prefix + loc)
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
