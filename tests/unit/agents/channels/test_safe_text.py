"""Safe text (agents/channels/text.py) and the Slack/Telegram escapes: tables of cases,
properties over any text, and the unsafe-character table checked against ``unicodedata``."""

from __future__ import annotations

import email.policy
import json
import re
import sys
import unicodedata
from email.message import EmailMessage

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tocsin.agents.channels import slack, telegram, text

UNSAFE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs"}
BIDI = set(text.BIDI_CONTROLS)
#: what ``str.splitlines`` breaks on: a header holding one of these is refused by ``email``
SPLITLINES = set("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")

#: text with every kind of trouble in it, and plain text around it
hostile = st.lists(st.sampled_from(
    [*SPLITLINES, "\r\n", "\t", "\x00", "\x07", "\x1b", "\x1b[31m", "\x7f", "\x9b", "\u200b", "\ufeff",
     *BIDI, "\u200e", "\U000e0041", "\ud800", "a", "Z", " ", "é", "<", ">", "&", "@", "|", "€",
     "<!channel>", "@here", "<http://x|y>", "channel"])).map("".join)
any_text = st.one_of(st.text(), hostile, st.text(st.characters(min_codepoint=0, max_codepoint=0x3000)))


def unsafe(ch: str) -> bool:
    return unicodedata.category(ch) in UNSAFE_CATEGORIES


# ---------------------------------------------------------------- the table of unsafe characters


def test_unsafe_ranges_are_exactly_the_unsafe_categories() -> None:
    expected = [cp for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)) in UNSAFE_CATEGORIES]
    table = [cp for a, b in text.UNSAFE_RANGES for cp in range(a, b + 1)]
    assert table == expected, f"UNSAFE_RANGES is out of date for Unicode {unicodedata.unidata_version}"


def test_terminal_escapes_every_unsafe_code_point_and_nothing_else() -> None:
    escaped = [cp for cp in range(sys.maxunicode + 1) if text.terminal(chr(cp)) != chr(cp)]
    assert escaped == [cp for cp in range(sys.maxunicode + 1) if unsafe(chr(cp))]


# ---------------------------------------------------------------- header


@pytest.mark.parametrize(("raw", "folded"), [
    ("first line\nsecond line", "first line second line"),
    ("first line\r\nsecond line", "first line second line"),
    ("a\rb", "a b"),
    ("a\x0bb", "a b"),
    ("a\x0cb", "a b"),
    ("a\x1cb\x1dc\x1ed", "a b c d"),
    ("a\x85b", "a b"),
    ("a\u2028b", "a b"),
    ("a\u2029b", "a b"),
    ("a \n\n\t b", "a b"),
    ("tab\there", "tab here"),
    ("nul\x00bel\x07", "nul bel"),
    ("\x1b[31mred\x1b[0m", "[31mred [0m"),
    ("c1\x9bhere", "c1 here"),
    ("del\x7f", "del"),
    ("\u202eevil", "evil"),
    ("iso\u2066late\u2069", "iso late"),
    ("\n", ""),
    ("plain subject", "plain subject"),
    ("  kept as is when safe  ", "  kept as is when safe  "),
    ("Größe €5 — ok", "Größe €5 — ok"),
    ("zero\u200bwidth", "zero\u200bwidth"),  # invisible, but no control
])
def test_header_table(raw: str, folded: str) -> None:
    assert text.header(raw) == folded


@given(any_text)
def test_no_header_holds_a_line_break_or_control(raw: str) -> None:
    out = text.header(raw)
    assert len(out.splitlines()) <= 1
    assert not SPLITLINES & set(out)
    assert not any(unicodedata.category(ch) in {"Cc", "Zl", "Zp", "Cs"} for ch in out)
    assert not BIDI & set(out)
    assert text.header(out) == out  # folded once is folded


@given(any_text)
def test_every_header_is_a_subject_email_writes_and_reads_back(raw: str) -> None:
    subject = text.header("[SEV1] " + raw)
    msg = EmailMessage()
    msg["Subject"] = subject  # raised "Header values may not contain linefeed ..." before
    msg.set_content("x")
    parsed = email.message_from_bytes(msg.as_bytes(policy=email.policy.SMTPUTF8), policy=email.policy.default)
    # folding may move a long word to a continuation line: the words come back, on one line
    assert parsed["Subject"].split() == subject.split() and len(parsed["Subject"].splitlines()) == 1


# ---------------------------------------------------------------- plain


@pytest.mark.parametrize(("raw", "body"), [
    ("first\nsecond", "first\nsecond"),
    ("first\r\nsecond", "first\nsecond"),
    ("a\rb\x0bc\x0cd\x85e\u2028f\u2029g\x1ch", "a\nb\nc\nd\ne\nf\ng\nh"),
    ("tab\tkept", "tab\tkept"),
    ("\x1b[31mred\x07", "[31mred"),
    ("c1\x9b del\x7f nul\x00", "c1 del nul"),
    ("\u202eevil\u2066", "evil"),
    ("marks \u200e\u200f kept", "marks \u200e\u200f kept"),
    ("plain", "plain"),
])
def test_plain_table(raw: str, body: str) -> None:
    assert text.plain(raw) == body


@given(any_text)
def test_plain_keeps_the_lines_and_drops_the_controls(raw: str) -> None:
    out = text.plain(raw)
    # the same lines as str.splitlines sees (a sentinel keeps a last, empty line)
    assert (out + "x").split("\n") == [text.plain(line) for line in (raw + "x").splitlines()]
    assert all(ch in "\n\t" or unicodedata.category(ch) not in {"Cc", "Zl", "Zp", "Cs"} for ch in out)
    assert not BIDI & set(out)
    assert text.plain(out) == out


# ---------------------------------------------------------------- terminal


@pytest.mark.parametrize(("raw", "shown"), [
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
    ("bell\x07", "bell\\x07"),
    ("\u202eevil", "\\u202eevil"),
    ("two\nlines\r", "two\\nlines\\r"),
    ("tab\t", "tab\\t"),
    ("csi\x9b2J", "csi\\x9b2J"),
    ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),  # OSC: set the window title
    ("tag\U000e0041", "tag\\U000e0041"),
    ("zero\u200bwidth", "zero\\u200bwidth"),
    ("sep\u2028", "sep\\u2028"),
    ("Größe €5 \\ ok", "Größe €5 \\ ok"),
])
def test_terminal_table(raw: str, shown: str) -> None:
    assert text.terminal(raw) == shown


@given(any_text)
def test_no_terminal_output_holds_a_control_format_or_separator_character(raw: str) -> None:
    out = text.terminal(raw)
    assert not any(unsafe(ch) for ch in out)
    assert len(out.splitlines()) <= 1
    out.encode("utf-8")  # printable on any UTF-8 stream (no surrogates)
    if not any(unsafe(ch) for ch in raw):
        assert out == raw


# ---------------------------------------------------------------- JSON lines


@given(st.dictionaries(any_text, any_text, max_size=4))
def test_json_line_is_the_same_value_on_one_safe_line(data: dict[str, str]) -> None:
    try:
        raw = orjson.dumps(data)
    except TypeError:  # a surrogate: no JSON at all
        return
    line = text.json_line(raw)
    assert json.loads(line) == orjson.loads(line) == data
    decoded = line.decode("utf-8")
    assert len(decoded.splitlines()) == 1 and b"\n" not in line
    assert not any(unsafe(ch) for ch in decoded)


def test_json_line_leaves_safe_json_alone() -> None:
    raw = orjson.dumps({"a": "b", "n": 1, "é": "€"})
    assert text.json_line(raw) is raw


# ---------------------------------------------------------------- Slack


@pytest.mark.parametrize(("raw", "escaped"), [
    ("<!channel> down", "&lt;!channel&gt; down"),
    ("<!here>", "&lt;!here&gt;"),
    ("<!everyone|everyone>", "&lt;!everyone|everyone&gt;"),
    ("ping <@U024BE7LH>", "ping &lt;@U024BE7LH&gt;"),
    ("<!subteam^SAZ94GDB8>", "&lt;!subteam^SAZ94GDB8&gt;"),
    ("<http://evil|click>", "&lt;http://evil|click&gt;"),
    ("@channel look", "@\u2060channel look"),
    ("hey @here and @Everyone", "hey @\u2060here and @\u2060Everyone"),
    ("ops@here.com @channels", "ops@here.com @channels"),  # an address, another word
    ("a & b", "a &amp; b"),
    ("bell\x07 \u202eevil\nnext", "bell evil\nnext"),
])
def test_slack_escape_table(raw: str, escaped: str) -> None:
    assert slack.escape(raw) == escaped


@pytest.mark.parametrize(("raw", "kept"), [
    ("<!channel> db down", "<!channel> db down"),
    ("<!here> see <http://evil|click>", "<!here> see &lt;http://evil|click&gt;"),
    ("<@U024BE7LH|bob> & <!subteam^SAZ94GDB8>", "<@U024BE7LH|bob> &amp; <!subteam^SAZ94GDB8>"),
    ("@channel", "@channel"),
    ("<!channel <http://x>>", "&lt;!channel &lt;http://x&gt;&gt;"),
])
def test_slack_allowed_mentions_stay_and_links_do_not(raw: str, kept: str) -> None:
    assert slack.escape(raw, allow_mentions=True) == kept


LIVE_SLACK = re.compile(r"(?<![\w@.])@(?:channel|here|everyone)\b", re.I)


@given(any_text)
def test_no_slack_text_can_mention_or_link(raw: str) -> None:
    out = slack.escape(raw)
    assert "<" not in out and ">" not in out  # no mention, link or command token at all
    assert re.sub(r"&(?:amp|lt|gt);", "", out).count("&") == 0
    assert not LIVE_SLACK.search(out)


@given(any_text)
def test_allowed_slack_text_keeps_only_mention_tokens(raw: str) -> None:
    out = slack.escape(raw, allow_mentions=True)
    rest = slack.MENTION.sub("", out)
    assert "<" not in rest and ">" not in rest


# ---------------------------------------------------------------- Telegram


@pytest.mark.parametrize(("raw", "escaped"), [
    ("@admin look", "@\u2060admin look"),
    ("(@oncall_team)", "(@\u2060oncall_team)"),
    ("mail ops@example.com", "mail ops@example.com"),
    ('<a href="http://evil">click</a>', '<a href="http://evil">click</a>'),  # plain text: shown as is
    ("[click](http://evil)", "[click](http://evil)"),
    ("bell\x07\u202e", "bell"),
])
def test_telegram_escape_table(raw: str, escaped: str) -> None:
    assert telegram.escape(raw) == escaped


@given(any_text)
def test_no_telegram_text_can_mention(raw: str) -> None:
    assert not re.search(r"(?<![\w@])@\w", telegram.escape(raw))
    assert telegram.escape(raw, allow_mentions=True) == text.plain(raw)
