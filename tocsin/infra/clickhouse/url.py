"""``TOCSIN_CLICKHOUSE_URL``: parsed into a ``Target``, and as it may be shown.

- ``chdb:///abs/path``: the embedded engine, in-process, on that data directory.
- ``http(s)://user:password@host:port/db``: a ClickHouse server (``db`` defaults to ``tocsin``);
  query options are clickhouse-connect's own (``verify``, ``ca_cert``...).

A bad URL is a ``ConfigError`` naming the setting. Only the redacted form (password and
secret query values as ``***``) is ever logged or put in an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit

from ...errors import ConfigError
from ..redact import redact_url
from .migrations import DATABASE

SETTING = "TOCSIN_CLICKHOUSE_URL"


@dataclass(frozen=True)
class Target:
    """A parsed DSN. ``redacted`` is the only form that may be logged or shown."""

    kind: str  # "chdb" or "http"
    redacted: str
    path: str | None = None
    host: str = "localhost"
    port: int = 8123
    username: str = "default"
    password: str = ""
    secure: bool = False
    database: str = DATABASE
    options: tuple[tuple[str, str], ...] = ()


def redact_dsn(dsn: str) -> str:
    """The DSN with its password and secret query values replaced by ``***`` (safe to log)."""
    out = redact_url(dsn)
    return "<invalid ClickHouse URL>" if out == "<invalid URL>" else out


def with_tls_options(url: str, ca_cert: Path | None, verify: bool) -> str:
    """``url`` carrying ``TOCSIN_CLICKHOUSE_CA_CERT`` / ``TOCSIN_CLICKHOUSE_VERIFY`` as its
    ``ca_cert`` / ``verify`` options (clickhouse-connect's own URL option names), so that every
    store opened from ``Settings.clickhouse_dsn`` connects the same way. The settings win over
    the URL's own options; other URLs than https:// are returned as they are."""
    if not url.strip().lower().startswith("https://") or (ca_cert is None and verify):
        return url
    parts = urlsplit(url.strip())
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if not (k == "ca_cert" and ca_cert is not None) and not (k == "verify" and not verify)]
    if ca_cert is not None:
        pairs.append(("ca_cert", str(ca_cert.resolve())))
    if not verify:
        pairs.append(("verify", "false"))
    return parts._replace(query=urlencode(pairs, safe="/")).geturl()


def parse_dsn(dsn: str) -> Target:
    """Parse ``chdb:///abs/path`` or ``http(s)://user:pass@host:port/db``."""
    text = dsn.strip()
    redacted = redact_dsn(text)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ConfigError(SETTING, f"not a valid URL: {redacted}") from None
    if parts.scheme == "chdb":
        path = unquote(parts.netloc + parts.path) if parts.netloc not in ("", "localhost") else unquote(parts.path)
        if not path or not os.path.isabs(path):
            raise ConfigError(SETTING, f"chdb needs an absolute data directory (chdb:///abs/path), got {redacted}")
        return Target("chdb", redacted, path=os.path.realpath(path))
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise ConfigError(SETTING, f"no host in {redacted}")
        secure = parts.scheme == "https"
        db = unquote(parts.path.strip("/").split("/")[0]) or DATABASE
        opts = tuple((k, v[-1]) for k, v in parse_qs(parts.query).items())
        return Target(
            "http",
            redacted,
            host=parts.hostname,
            port=port or (8443 if secure else 8123),
            username=unquote(parts.username) if parts.username else "default",
            password=unquote(parts.password) if parts.password else "",
            secure=secure,
            database=db,
            options=opts,
        )
    raise ConfigError(SETTING, f"expected chdb:///abs/path or http(s)://user:pass@host:port/db, got {redacted}")
