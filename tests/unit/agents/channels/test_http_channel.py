"""The HTTP channels' pure parts (agents/channels/http.py) without a network: which URLs a
request can go to, what a transport error is called, how a body as received is decoded and
read as text or JSON. The requests themselves: tests/integration/test_channels_conformance.py."""

from __future__ import annotations

import gzip
import zlib

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from tocsin.agents.channels.http import (
    MAX_RESPONSE_BYTES,
    Answer,
    decode_body,
    parse_url,
    transport_reason,
)
from tocsin.decisions.retry import Reason


@pytest.mark.parametrize(("url", "host"), [
    ("http://127.0.0.1:8080/hook?x=1", "127.0.0.1"),
    ("HTTPS://Hooks.Example/p", "hooks.example"),
    ("https://u:p@h.example/p", "h.example"),
    ("http://[::1]:9/x", "::1"),
])
def test_a_url_a_request_can_go_to(url: str, host: str) -> None:
    parsed = parse_url(url)
    assert parsed.host == host and parsed.scheme in ("http", "https")


@pytest.mark.parametrize(("url", "why"), [
    ("not a url", "unsupported protocol '://'"),
    ("ftp://127.0.0.1/x", "unsupported protocol 'ftp://'"),
    ("http://", "no host"),
    ("http://h\n.example/x", "control character"),
    ("http://h.example/a\x00b", "control character"),
    ("http://127.0.0.1:99999/x", "Port out of range"),
    ("http://[::1/x", "IPv6"),
])
def test_a_url_no_request_can_go_to(url: str, why: str) -> None:
    with pytest.raises(aiohttp.InvalidURL) as refused:
        parse_url(url)
    assert refused.value.description and why in refused.value.description
    assert url not in refused.value.description


@pytest.mark.parametrize(("exc", "reason"), [
    (TimeoutError(), Reason.TIMEOUT),
    (aiohttp.ServerTimeoutError("read"), Reason.TIMEOUT),
    (aiohttp.ConnectionTimeoutError("connect"), Reason.TIMEOUT),
    (aiohttp.SocketTimeoutError("sock"), Reason.TIMEOUT),
    (ConnectionRefusedError(111, "refused"), Reason.CONNECTION),
    (aiohttp.ServerDisconnectedError(), Reason.CONNECTION),
    (aiohttp.ClientPayloadError("cut"), Reason.CONNECTION),
    (aiohttp.ClientResponseError(None, (), status=400, message="bad status line"), Reason.CONNECTION),  # type: ignore[arg-type]
    (OSError("reset"), Reason.CONNECTION),
])
def test_transport_errors_are_timeouts_or_connection_failures(exc: BaseException, reason: Reason) -> None:
    assert transport_reason(exc) is reason


BIG = b'{"ok": false, "description": "' + b"0" * (4 * MAX_RESPONSE_BYTES) + b'"}'


@pytest.mark.parametrize(("raw", "coding", "expected"), [
    (b"plain", None, b"plain"),
    (b"plain", "identity", b"plain"),
    (b"x" * (MAX_RESPONSE_BYTES + 10), None, b"x" * MAX_RESPONSE_BYTES),
    (gzip.compress(b"zipped", mtime=0), "gzip", b"zipped"),
    (gzip.compress(b"zipped", mtime=0), " X-Gzip ", b"zipped"),
    (zlib.compress(b"deflated"), "deflate", b"deflated"),
    (zlib.compress(b"raw deflate")[2:-4], "deflate", b"raw deflate"),  # no zlib wrapper
    (gzip.compress(BIG, mtime=0), "gzip", BIG[:MAX_RESPONSE_BYTES]),  # inflated to the bound only
    (b"not gzip", "gzip", b""),
    (b"whatever", "br", b""),
    (b"whatever", "gzip, br", b""),
])
def test_a_body_is_decoded_within_the_bound(raw: bytes, coding: str | None, expected: bytes) -> None:
    assert decode_body(raw, coding) == expected


def answer(raw: bytes, **headers: str) -> Answer:
    return Answer(500, CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()})), raw)


@pytest.mark.parametrize(("resp", "text"), [
    (answer(b""), ""),
    (answer("caf\u00e9".encode()), "caf\u00e9"),
    (answer("caf\u00e9".encode("latin-1"), Content_Type="text/plain; charset=ISO-8859-1"), "caf\u00e9"),
    (answer("caf\u00e9".encode("latin-1"), Content_Type='text/plain; charset="latin-1"'), "caf\u00e9"),
    (answer(b"caf\xe9"), "caf\ufffd"),  # not UTF-8: replaced, never an error
    (answer(b"ok", Content_Type="text/plain; charset=no-such-codec"), "ok"),
    (answer(gzip.compress(b"busy", mtime=0), Content_Encoding="gzip"), "busy"),
])
def test_an_answer_as_text(resp: Answer, text: str) -> None:
    assert resp.text == text


@pytest.mark.parametrize(("resp", "parsed"), [
    (answer(b'{"ok": false}', Content_Type="application/json"), {"ok": False}),
    (answer(b'{"ok": false}', Content_Type="application/json; charset=utf-8"), {"ok": False}),
    (answer(b'{"ok": false}'), None),  # not said to be JSON
    (answer(b"", Content_Type="application/json"), None),
    (answer(b"{not json", Content_Type="application/json"), None),
    (answer(b"\xff\xfe", Content_Type="application/json"), None),
    (answer(gzip.compress(b'[1, 2]', mtime=0), Content_Type="application/json", Content_Encoding="gzip"), [1, 2]),
])
def test_an_answer_as_json(resp: Answer, parsed: object) -> None:
    assert resp.json() == parsed


def test_headers_are_read_case_insensitively() -> None:
    assert answer(b"", Retry_After="7").headers.get("retry-after") == "7"
