"""Who may use which HTTP surface of the worker (SECURITY.md): one decision for every request,
Tocsin's views and Faust's own (``/router/``, ``/table/``, ...) alike, applied by one aiohttp
middleware installed through Faust's ``web_application_options``.

Surfaces:

- ``open``: ``/health``, ``/metrics``, the dashboard page and its static files, the OpenAPI
  document: they hold no alert data;
- ``read``: the read API (``GET /api/alerts...``): the read or the API token; open on a
  loopback worker with no token configured;
- ``sql``: analyst SQL (``/api/sql``): the read or the API token, always one;
- ``write``: lifecycle actions, setting and expiring silences (``POST /api/v2/silences``,
  ``DELETE /api/v2/silence/{id}``; reading them is ``read``), one-off maintenance windows
  (``/api/maintenance``), changing a person's preferences (``PUT``/``DELETE
  /api/preferences/{name}``; reading them is ``read``): the API token, always;
- ``ingest``: alerts posted by Alertmanager and PagerDuty clients (``POST /api/v1/alerts``,
  ``/api/v2/alerts``, ``/api/ingest/...``, ``/v2/enqueue``): the ingest or the API token, as a
  bearer or as basic auth's password (Prometheus's ``alertmanager_config`` sends either);
  with neither configured, open only with ``TOCSIN_INGEST_OPEN=true`` on a loopback worker;
- ``admin``: everything else, Faust's views included: the API token, always.

Cross-site requests are refused whatever the token: an ``Origin`` (or ``Sec-Fetch-Site:
cross-site``) that is not the worker's own, a body that is not JSON, and, on a worker with no
token, a ``Host`` that is not a loopback name (DNS rebinding) nor listed in
``TOCSIN_WEB_ALLOWED_HOSTS``.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

from ..core.settings import Settings
from ..errors import ConfigError
from .answers import json_answer

log = logging.getLogger(__name__)


class Surface(str, Enum):
    OPEN = "open"
    READ = "read"
    SQL = "sql"
    WRITE = "write"
    INGEST = "ingest"
    ADMIN = "admin"


OPEN_PATHS = frozenset({"/health", "/metrics", "/", "/api/openapi.json", "/favicon.ico",
                        "/-/healthy", "/-/ready", "/api/v2/status"})
INGEST_PATHS = frozenset({"/api/v1/alerts", "/api/v2/alerts", "/v2/enqueue"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def surface_of(method: str, path: str) -> Surface:
    """The surface a request reaches (the path as the router sees it, decoded once)."""
    if path in OPEN_PATHS or path.startswith("/static/"):
        return Surface.OPEN
    if path in INGEST_PATHS or path.startswith("/api/ingest/"):
        return Surface.INGEST if method != "GET" else Surface.READ
    if path == "/api/sql" or path.startswith("/api/sql/"):
        return Surface.SQL
    if path == "/api/alerts" or path.startswith("/api/alerts/") or path == "/api/v2/silences" \
            or path.startswith("/api/v2/silence/") or path == "/api/preferences" \
            or path.startswith("/api/preferences/") or path == "/api/maintenance" \
            or path.startswith("/api/maintenance/"):
        if method in ("GET", "HEAD"):
            return Surface.READ
        return Surface.WRITE
    return Surface.ADMIN


@dataclass(frozen=True)
class Tokens:
    api: str | None = None
    read: str | None = None
    ingest: str | None = None
    #: ingest without a token (TOCSIN_INGEST_OPEN=true; only honoured on a loopback worker)
    ingest_open: bool = False

    @classmethod
    def of(cls, s: Settings) -> Tokens:
        def secret(v: Any) -> str | None:
            return v.get_secret_value() if v else None

        return cls(secret(s.api_token), secret(s.read_token), secret(s.ingest_token),
                   s.ingest_open and is_loopback(s.web_host))

    @property
    def configured(self) -> bool:
        """A read or an API token is set: reads need one (the ingest token opens only ingest)."""
        return bool(self.api or self.read)


@dataclass(frozen=True)
class Verdict:
    status: int  # 0: let it through
    error: str = ""

    @property
    def allowed(self) -> bool:
        return self.status == 0


ALLOW = Verdict(0)


def _given(headers: Mapping[str, str], basic: bool = False) -> str | None:
    """The bearer token, or (``basic``) basic auth's password, of a request."""
    auth = headers.get("Authorization") or headers.get("authorization") or ""
    scheme, _, value = auth.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if basic and scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def _same(given: str, expected: str | None) -> bool:
    return expected is not None and hmac.compare_digest(given.encode(), expected.encode())


def host_name(host: str) -> str:
    """``[::1]:6066`` → ``::1``, ``Example.com:80`` → ``example.com``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def is_loopback(host: str) -> bool:
    name = host_name(host)
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def decide(method: str, path: str, headers: Mapping[str, str], tokens: Tokens,
           allowed_hosts: frozenset[str] = frozenset()) -> Verdict:
    """Let the request through (status 0) or the status and reason to answer with."""
    method = method.upper()
    host = headers.get("Host") or headers.get("host") or ""
    origin = headers.get("Origin") or headers.get("origin")
    if origin is not None:
        parts = urlsplit(origin)
        if origin == "null" or not parts.netloc or parts.netloc.lower() != host.lower():
            return Verdict(403, "cross-origin requests are refused")
    if (headers.get("Sec-Fetch-Site") or headers.get("sec-fetch-site") or "").lower() == "cross-site":
        return Verdict(403, "cross-site requests are refused")
    if not tokens.configured and not is_loopback(host) and host_name(host) not in allowed_hosts:
        return Verdict(403, "unexpected Host header: this worker answers loopback names only "
                            "(list others in TOCSIN_WEB_ALLOWED_HOSTS)")
    surface = surface_of(method, path)
    if method in BODY_METHODS:
        length = headers.get("Content-Length") or headers.get("content-length") or "0"
        ctype = (headers.get("Content-Type") or headers.get("content-type") or "").split(";", 1)[0]
        has_body = length.strip() not in ("", "0") or "Transfer-Encoding" in headers
        if has_body and ctype.strip().lower() != "application/json":
            return Verdict(415, "the body must be JSON (Content-Type: application/json)")
    if surface is Surface.OPEN:
        return ALLOW
    if surface is Surface.INGEST:
        return _ingest(headers, tokens)
    given = _given(headers)
    is_api = given is not None and _same(given, tokens.api)
    is_read = given is not None and (is_api or _same(given, tokens.read))
    if surface is Surface.READ:
        if not tokens.configured or is_read:
            return ALLOW
        return Verdict(401, "a valid bearer token is required (TOCSIN_READ_TOKEN or TOCSIN_API_TOKEN)")
    if surface is Surface.SQL:
        if not tokens.configured:
            return Verdict(403, "SQL is disabled: set TOCSIN_READ_TOKEN or TOCSIN_API_TOKEN on the worker")
        if is_read:
            return ALLOW
        return Verdict(401, "a valid bearer token is required (TOCSIN_READ_TOKEN or TOCSIN_API_TOKEN)")
    # write and admin
    if tokens.api is None:
        what = "writes are" if surface is Surface.WRITE else "this surface is"
        return Verdict(403, f"{what} disabled: set TOCSIN_API_TOKEN on the worker")
    if is_api:
        return ALLOW
    if is_read:
        return Verdict(403, "the read token may not do this: the API token is required")
    return Verdict(401, "a valid bearer token is required (TOCSIN_API_TOKEN)")


def _ingest(headers: Mapping[str, str], tokens: Tokens) -> Verdict:
    given = _given(headers, basic=True)
    if given is not None and (_same(given, tokens.ingest) or _same(given, tokens.api)):
        return ALLOW
    if tokens.ingest is None and tokens.api is None:
        if tokens.ingest_open:
            return ALLOW
        return Verdict(403, "ingest is disabled: set TOCSIN_INGEST_TOKEN on the worker "
                            "(or TOCSIN_INGEST_OPEN=true on a loopback worker)")
    return Verdict(401, "a valid ingest token is required (TOCSIN_INGEST_TOKEN, bearer or basic auth)")


def check_exposure(s: Settings) -> None:
    """A worker bound beyond loopback refuses to start without the API token (as Redis's
    protected mode): an open API on the network lets anyone read every alert."""
    if s.api_token is None and not is_loopback(s.web_host):
        raise ConfigError("TOCSIN_API_TOKEN",
                          f"required when the web server binds {s.web_host!r}, which is not loopback "
                          "(generate one: openssl rand -hex 32)")


Handler = Callable[[Any], Awaitable[Any]]


def middleware(s: Settings) -> Any:
    """The aiohttp middleware that applies ``decide`` to every request."""
    from aiohttp import web

    tokens = Tokens.of(s)
    allowed = frozenset(host_name(h) for h in s.web_allowed_hosts.split(",") if h.strip())

    @web.middleware
    async def guard(request: Any, handler: Handler) -> Any:
        verdict = decide(request.method, request.path, request.headers, tokens, allowed)
        if verdict.allowed:
            return await handler(request)
        headers = {"WWW-Authenticate": 'Bearer realm="tocsin"'} if verdict.status == 401 else None
        log.debug("refused %s %s: %s", request.method, request.path, verdict.error)
        return json_answer({"error": verdict.error}, verdict.status, headers)

    return guard
