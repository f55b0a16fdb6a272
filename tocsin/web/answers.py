"""How every view answers in JSON: one ``aiohttp`` response, the body encoded by orjson
(a value it does not know, such as a ``Decimal`` from ClickHouse, as its text)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web as aioweb


def json_answer(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> aioweb.Response:
    return aioweb.Response(body=orjson.dumps(body, default=str), status=status,
                           headers={"Content-Type": "application/json", **(headers or {})})
