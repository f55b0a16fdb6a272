"""Safe text: what of an alert's text (written by any producer) may reach a header, a message
body, a terminal or a JSON line. Pure functions of one string; no I/O.

    header(text)            one line: every control character (C0, DEL, C1), line or
                            paragraph separator, surrogate and bidi embedding/override/isolate
                            becomes a space, runs of whitespace one space, the ends stripped.
                            No output holds a character ``str.splitlines`` breaks on, so
                            ``email`` and HTTP libraries accept it as a header value.
    plain(text)             a body: every line break (``\\r\\n``, ``\\r``, ``\\v``, ``\\f``,
                            ``\\x1c``-``\\x1e``, ``\\x85``, U+2028, U+2029) becomes ``\\n``; the
                            other controls (tab kept), surrogates and bidi
                            embeddings/overrides/isolates are dropped.
    terminal(text)          one line for a terminal: every character of category Cc, Cf, Zl,
                            Zp or Cs (ANSI escapes, BEL, C1, bidi overrides, zero-width
                            characters, line breaks) shown as a visible escape (``\\x1b``,
                            ``\\u202e``), so a producer cannot drive the terminal.
    json_line(data)         orjson's output with the same characters escaped as ``\\uXXXX``
                            (orjson escapes only C0): the same JSON value, safe to ``cat``
                            and to split with ``str.splitlines``.
"""

from __future__ import annotations

import re

#: every character of Unicode categories Cc, Cf, Zl, Zp and Cs (Unicode 14, Python 3.11's;
#: tests/unit/agents/channels/test_safe_text.py checks the table against ``unicodedata`` code point by point)
UNSAFE_RANGES: tuple[tuple[int, int], ...] = (
    (0x0000, 0x001F), (0x007F, 0x009F), (0x00AD, 0x00AD), (0x0600, 0x0605), (0x061C, 0x061C),
    (0x06DD, 0x06DD), (0x070F, 0x070F), (0x0890, 0x0891), (0x08E2, 0x08E2), (0x180E, 0x180E),
    (0x200B, 0x200F), (0x2028, 0x202E), (0x2060, 0x2064), (0x2066, 0x206F), (0xD800, 0xDFFF),
    (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD), (0x110CD, 0x110CD),
    (0x13430, 0x13438), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
)
#: the line breaks of ``str.splitlines`` (``\r\n`` too)
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
#: bidi embeddings, overrides and isolates (they reorder the text after them); the marks
#: (U+200E, U+200F, U+061C) have no scope and are kept in bodies
BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def _cls(ranges: tuple[tuple[int, int], ...]) -> str:
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"
                   for a, b in ranges)


_UNSAFE = re.compile(f"[{_cls(UNSAFE_RANGES)}]")
_HEADER_UNSAFE = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029\\ud800-\\udfff{BIDI_CONTROLS}]")
_BREAK = re.compile(f"\r\n|[{LINE_BREAKS}]")
_BODY_DROP = re.compile(f"[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f\\ud800-\\udfff{BIDI_CONTROLS}]")
_BODY_UNSAFE = re.compile(f"[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f\\u2028\\u2029\\ud800-\\udfff{BIDI_CONTROLS}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def header(text: str) -> str:
    """``text`` as one header line (folded, never raising): see the module's table."""
    if _HEADER_UNSAFE.search(text) is None:
        return text
    return " ".join(_HEADER_UNSAFE.sub(" ", text).split())


def plain(text: str) -> str:
    """``text`` as plain body text: line breaks as ``\\n``, other controls dropped."""
    if _BODY_UNSAFE.search(text) is None:
        return text
    return _BODY_DROP.sub("", _BREAK.sub("\n", text))


def _escape(m: re.Match[str]) -> str:
    ch = m.group(0)
    named = _NAMED.get(ch)
    if named is not None:
        return named
    cp = ord(ch)
    return f"\\x{cp:02x}" if cp < 0x100 else f"\\u{cp:04x}" if cp < 0x10000 else f"\\U{cp:08x}"


def terminal(text: str) -> str:
    """``text`` with every control, format and separator character shown as an escape."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape, text)


def _json_escape(m: re.Match[str]) -> str:
    cp = ord(m.group(0))
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    cp -= 0x10000
    return f"\\u{0xD800 + (cp >> 10):04x}\\u{0xDC00 + (cp & 0x3FF):04x}"


def json_line(data: bytes) -> bytes:
    """JSON (orjson's compact output) with the unsafe characters escaped: the same value.
    They can only sit inside strings there (orjson writes no whitespace), where an escape
    is what JSON allows for any character."""
    text = data.decode("utf-8")
    if _UNSAFE.search(text) is None:
        return data
    return _UNSAFE.sub(_json_escape, text).encode("utf-8")


__all__ = ["BIDI_CONTROLS", "LINE_BREAKS", "UNSAFE_RANGES", "header", "json_line", "plain", "terminal"]
