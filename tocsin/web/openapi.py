"""``GET /api/openapi.json``: the OpenAPI description of this web server (``tocsin/web/openapi.json``).

Open like ``/health``: it says what the API is, never what it holds. Read and parsed once at
start (a broken file fails the worker there, not a client later), served from memory.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import orjson

PATH = "/api/openapi.json"

HEADERS: dict[str, str] = {
    "Content-Type": "application/json",
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}


def load_document() -> bytes:
    """The packaged document, checked to be a JSON object naming its OpenAPI version."""
    raw = (resources.files("tocsin.web") / "openapi.json").read_bytes()
    doc = orjson.loads(raw)
    if not isinstance(doc, dict) or not str(doc.get("openapi", "")).startswith("3."):
        raise ValueError("tocsin/web/openapi.json is not an OpenAPI 3 document")
    return raw


def register(rt: Any) -> None:
    body = load_document()

    @rt.app.page(PATH, name="openapi_document")
    async def openapi_document(web: Any, request: Any) -> Any:
        return web.bytes(body, headers=dict(HEADERS))
