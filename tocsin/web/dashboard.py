"""The on-call dashboard: ``/`` serves ``index.html``, ``/static/{name}`` its script and style.

No build step: four files under ``tocsin/web/static``, read once and served from memory.
Only the listed names are served (no path from the request ever reaches the file system).
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

log = logging.getLogger(__name__)

#: name → content type; nothing else under /static is served
FILES: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}

#: the page talks only to its own origin; no inline script, no framing
HEADERS: dict[str, str] = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
}


def load_files() -> dict[str, bytes]:
    root = resources.files("tocsin.web") / "static"
    return {name: (root / name).read_bytes() for name in FILES}


def register(rt: Any) -> None:
    app = rt.app
    files = load_files()

    def respond(web: Any, name: str) -> Any:
        # the whole Content-Type goes in the headers: aiohttp refuses a charset in content_type
        return web.bytes(files[name], headers={"Content-Type": FILES[name], **HEADERS})

    @app.page("/", name="dashboard_index")
    async def dashboard_index(web: Any, request: Any) -> Any:
        return respond(web, "index.html")

    @app.page("/static/{name}", name="dashboard_static")
    async def dashboard_static(web: Any, request: Any, name: str) -> Any:
        if name not in files:
            return web.text("not found\n", status=404)
        return respond(web, name)
