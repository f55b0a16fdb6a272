"""``redact_url``: a URL from the settings as it may be printed, logged or put in an error.

As Go's ``url.URL.Redacted`` and Alertmanager's ``RedactURL`` do: the password of the
userinfo becomes ``***`` (the user name stays: it tells an operator which account, and proves
nothing), and so does the value of every query parameter but a few known harmless ones,
since passwords and tokens travel there too (``?password=``, ``?access_token=``). The
fragment goes. Scheme, host, port and path stay, so the operator still sees what is meant.

Channel destinations (webhook, Slack, Telegram URLs) are stricter still: their path is the
secret, and ``agents/channels/base.py`` keeps only their scheme and host.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

MASK = "***"
#: query parameters whose values are settings, never secrets (clickhouse-connect's URL options)
SAFE_QUERY_KEYS = frozenset({"verify", "secure", "ca_cert", "compress", "database", "connect_timeout",
                             "send_receive_timeout", "query_limit", "tz_mode"})


def redact_url(url: str) -> str:
    """``http://u:s3cret@h:8123/db?password=x&verify=false`` →
    ``http://u:***@h:8123/db?password=***&verify=false``."""
    text = url.strip()
    if "://" not in text:
        # host:port lists (Kafka bootstrap) carry no secret; anything with userinfo loses it
        return f"{MASK}@{text.rsplit('@', 1)[1]}" if "@" in text else text
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (a malformed port raises here)
    except ValueError:
        return "<invalid URL>"
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if colon else f"{userinfo}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, v if k.lower() in SAFE_QUERY_KEYS else MASK) for k, v in pairs], safe="*/:")
    # assembled by hand: urlunsplit drops the "//" of an empty authority (chdb:///path)
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


__all__ = ["MASK", "SAFE_QUERY_KEYS", "redact_url"]
