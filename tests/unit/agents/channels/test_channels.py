"""Channels without a network: the registry, Slack/Telegram rendering, mentions and the
``allow_mentions`` routing option, what a result tells the circuit breaker, redaction and the
webhook signature check (the receiver's recipe in SIGNING.md)."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tocsin.agents.channels import REGISTRY, build_channels, candidate_names
from tocsin.agents.channels.base import ERROR_MAX, redact, redact_url, url_secrets
from tocsin.agents.channels.signing import sign, verify
from tocsin.agents.channels.slack import SlackChannel, escape
from tocsin.agents.channels.slack import render as slack_render
from tocsin.agents.channels.telegram import TEXT_MAX, TelegramChannel, render_text
from tocsin.agents.channels.webhook import WebhookChannel
from tocsin.core.settings import Settings
from tocsin.decisions.limits import CircuitBreaker, breaker_outcome
from tocsin.decisions.retry import Reason
from tocsin.decisions.routing import parse_policy
from tocsin.schemas.alert import create_alert
from tocsin.schemas.messages import DeliveryCommand


def command(summary: str = "db down", details: dict[str, Any] | None = None, severity: int = 1,
            suppressed: int = 0, **entity: str) -> DeliveryCommand:
    a = create_alert("db_write_fail", severity, summary, details=details or {},
                     event_timestamp=dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC), **entity)
    return DeliveryCommand(delivery_id="d" * 32, alert=a, dedupe_key="k", receiver="r", destination="slack:default",
                           suppressed_count=suppressed)


def settings(**kw: Any) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


# ---------------------------------------------------------------- registry


def test_registry_has_one_line_per_channel() -> None:
    assert set(REGISTRY) == {"console", "file", "webhook", "email", "slack", "telegram", "pagerduty"}


def test_slack_and_telegram_disabled_without_settings() -> None:
    chans = build_channels(settings(), parse_policy({}), env={})
    assert "slack:default" not in chans and "telegram:default" not in chans


def test_slack_default_from_settings() -> None:
    url = "https://hooks.slack.com/services/T0/B0/secretXYZ"
    chans = build_channels(settings(slack_default_webhook=url, delivery_timeout_s=3), parse_policy({}), env={})
    ch = chans["slack:default"]
    assert isinstance(ch, SlackChannel) and ch.timeout_s == 3
    assert url in ch.secrets()
    assert "secretXYZ" not in repr(ch)


@pytest.mark.parametrize(
    ("kw", "enabled"),
    [
        ({"telegram_bot_token": "123:abc", "telegram_chat_id": "42"}, True),
        ({"telegram_bot_token": "123:abc"}, False),  # no chat
        ({"telegram_chat_id": "42"}, False),  # no token
        ({"telegram_bot_token": "", "telegram_chat_id": "42"}, False),
    ],
)
def test_telegram_default_from_settings(kw: dict[str, str], enabled: bool) -> None:
    chans = build_channels(settings(**kw), parse_policy({}), env={})
    assert ("telegram:default" in chans) is enabled


def test_telegram_default_api_base() -> None:
    s = settings(telegram_bot_token="123:abc", telegram_chat_id="42", telegram_api_base="http://127.0.0.1:8081/")
    ch = build_channels(s, parse_policy({}), env={})["telegram:default"]
    assert isinstance(ch, TelegramChannel)
    assert ch.api_base == "http://127.0.0.1:8081" and ch.chat_id == "42"
    assert "123:abc" not in repr(ch)


def test_named_slack_and_telegram_from_routing_env() -> None:
    policy = parse_policy({
        "severity": {"1": ["slack:ops", "telegram:oncall", "telegram:nochat"]},
        "destinations": {
            "slack:ops": {"webhook_env": "OPS_SLACK"},
            "telegram:oncall": {"token_env": "TG_TOKEN", "chat_id_env": "TG_CHAT", "api_base_env": "TG_BASE"},
            "telegram:nochat": {"token_env": "TG_TOKEN", "chat_id_env": "MISSING"},
        },
    })
    env = {"OPS_SLACK": "https://hooks.slack.com/services/X/Y/Z", "TG_TOKEN": "9:tok", "TG_CHAT": "-100",
           "TG_BASE": "http://127.0.0.1:9"}
    chans = build_channels(settings(), policy, env=env)
    assert isinstance(chans["slack:ops"], SlackChannel)
    tg = chans["telegram:oncall"]
    assert isinstance(tg, TelegramChannel) and tg.chat_id == "-100" and tg.api_base == "http://127.0.0.1:9"
    assert "telegram:nochat" not in chans
    assert {"slack:ops", "telegram:oncall"} <= set(candidate_names(policy))


def test_named_slack_accepts_url_env_too() -> None:
    policy = parse_policy({"destinations": {"slack:x": {"url_env": "X_URL"}}})
    assert "slack:x" in build_channels(settings(), policy, env={"X_URL": "https://hooks.slack.com/a/b/c"})


def test_default_rates() -> None:
    assert SlackChannel.default_rate_per_s == 1.0
    assert TelegramChannel.default_rate_per_s == 1.0
    assert WebhookChannel.default_rate_per_s is None


# ---------------------------------------------------------------- Slack rendering


@pytest.mark.parametrize(("text", "escaped"), [("a<b>&c", "a&lt;b&gt;&amp;c"), ("<!channel>", "&lt;!channel&gt;"),
                                               ("plain", "plain"), ("&amp;", "&amp;amp;")])
def test_slack_escape(text: str, escaped: str) -> None:
    assert escape(text) == escaped


def test_slack_message_shape() -> None:
    msg = slack_render(command("disk <full> & more", {"used": "99%"}, suppressed=3, account_id="acc"))
    assert msg["text"] == "[SEV1] disk &lt;full&gt; &amp; more (3 similar suppressed)"
    kinds = [b["type"] for b in msg["blocks"]]
    assert kinds[0] == "section" and kinds[-1] == "context"
    fields = " ".join(f["text"] for b in msg["blocks"] for f in b.get("fields", []))
    assert "acc" in fields and "SEV1" in fields and "db_write_fail" in fields and "3 similar" in fields
    assert any("99%" in b.get("text", {}).get("text", "") for b in msg["blocks"])
    json.dumps(msg)


@given(st.text(min_size=1, max_size=255).filter(str.strip),
       st.dictionaries(st.text(max_size=20), st.text(max_size=3000), max_size=5),
       st.text(max_size=3000))
def test_slack_limits_hold(summary: str, details: dict[str, str], account: str) -> None:
    try:
        cmd = command(summary, details, account_id=account or None)  # type: ignore[arg-type]
    except ValueError:
        return  # not a valid alert
    msg = slack_render(cmd)
    for b in msg["blocks"]:
        if "text" in b:
            assert len(b["text"]["text"]) <= 3000
        assert len(b.get("fields", [])) <= 10
        assert all(len(f["text"]) <= 2000 for f in b.get("fields", []))
    assert len(msg["blocks"]) <= 50


# ---------------------------------------------------------------- Telegram rendering


def test_telegram_text() -> None:
    text = render_text(command("db down", {"host": "db-1"}, severity=2, suppressed=4, symbol="BTC"))
    first = text.splitlines()[0]
    assert "[SEV2] db down (4 similar suppressed)" in first
    assert "symbol: BTC" in text and "db-1" in text and "fingerprint: db_write_fail::BTC:" in text


def test_telegram_text_is_cut_to_4096() -> None:
    text = render_text(command("x", {f"k{i}": "v" * 500 for i in range(15)}))
    assert len(text) == TEXT_MAX and text.endswith("…")


def test_telegram_url_and_secrets() -> None:
    ch = TelegramChannel("telegram:default", "123:SECRET", "42", "http://127.0.0.1:1/")
    assert ch._url == "http://127.0.0.1:1/bot123:SECRET/sendMessage"
    assert "123:SECRET" in ch.secrets()
    assert "SECRET" not in repr(ch) and "SECRET" not in str(ch)
    assert "SECRET" not in ch.redact(f"failed POST {ch._url}: boom, token 123:SECRET")
    body = json.loads(ch.body(command()))
    assert body["chat_id"] == "42" and body["text"]


# ---------------------------------------------------------------- redaction


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T/B/X", "https://hooks.slack.com/…"),
        ("https://user:pw@example.com:8443/p?q=1", "https://example.com:8443/…"),
        ("http://127.0.0.1:9/bot123:abc/sendMessage", "http://127.0.0.1:9/…"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_url_secrets_cover_path_query_and_password() -> None:
    s = url_secrets("https://u:hunter22@h.example/hooks/abcdef123?key=qwerty789")
    assert "hunter22" in s and "/hooks/abcdef123?key=qwerty789" in s
    assert url_secrets(None) == [] and url_secrets("") == []


def test_redact_longest_secret_first() -> None:
    out = redact("token abcdef-long and abcd", ["abcd", "abcdef-long"])
    assert out == "token <redacted> and <redacted>"


@given(st.text(max_size=2000), st.lists(st.from_regex(r"\A[A-Z0-9]{6,40}\Z"), max_size=4),
       st.integers(0, 2000))
def test_redact_removes_secrets_and_cuts(text: str, secrets: list[str], at: int) -> None:
    merged = text[:at] + " ".join(secrets) + text[at:] + "https://u:" + "".join(secrets) + "@h/p"
    out = redact(merged, secrets)
    assert len(out) <= ERROR_MAX
    for secret in secrets:
        assert secret not in out


def test_the_http_client_log_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    import tocsin.agents.channels.http  # noqa: F401 - installs the filter

    caplog.set_level(logging.INFO)
    logging.getLogger("aiohttp.client").info('Request: %s %s "%s %d %s"', "POST",
                                             "http://127.0.0.1:9/bot123:SECRET/sendMessage", "HTTP/1.1", 200, "OK")
    (rec,) = [r for r in caplog.records if r.name == "aiohttp.client"]
    assert "SECRET" not in rec.getMessage() and "127.0.0.1:9" in rec.getMessage()


# ---------------------------------------------------------------- signing


def test_sign_known_vector() -> None:
    # hmac.new(b"s3cret", b"1700000000.{}", sha256), computed independently
    import hashlib
    import hmac

    expected = "v1=" + hmac.new(b"s3cret", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign("s3cret", "1700000000", b"{}") == expected


def test_webhook_signs_with_the_given_clock() -> None:
    ch = WebhookChannel("webhook:default", "http://127.0.0.1:9/h", "s3cret")
    cmd = command()
    body = ch.body(cmd)
    h = ch.headers(cmd, body, now=1_700_000_000.9)
    assert h["X-Tocsin-Timestamp"] == "1700000000"
    assert h["X-Tocsin-Signature"] == sign("s3cret", "1700000000", body)
    assert h["Idempotency-Key"] == cmd.delivery_id
    assert json.loads(body)["delivery_id"] == cmd.delivery_id


NOW = 1_700_000_000


@pytest.mark.parametrize(
    ("secret", "ts", "body", "sig", "now", "ok"),
    [
        ("s", "1700000000", b"{}", sign("s", "1700000000", b"{}"), NOW, True),
        ("s", "1700000000", "{}", sign("s", "1700000000", b"{}"), NOW, True),  # str body
        ("s", "1700000000", b"{}", sign("s", "1700000000", b"{}"), NOW + 300, True),
        ("s", "1700000000", b"{}", sign("s", "1700000000", b"{}"), NOW - 300, True),
        ("s", "1700000000", b"{}", sign("s", "1700000000", b"{}"), NOW + 301, False),  # stale
        ("s", "1700000000", b"{}", sign("s", "1700000000", b"{}"), NOW - 301, False),  # future
        ("s", "1700000000", b"{} ", sign("s", "1700000000", b"{}"), NOW, False),  # body changed
        ("t", "1700000000", b"{}", sign("s", "1700000000", b"{}"), NOW, False),  # other secret
        ("s", "1700000001", b"{}", sign("s", "1700000000", b"{}"), NOW, False),  # ts changed
        ("s", "1700000000", b"{}", sign("s", "1700000000", b"{}").upper(), NOW, False),
        ("s", "1700000000", b"{}", sign("s", "1700000000", b"{}")[3:], NOW, False),  # no v1=
        ("s", "1700000000", b"{}", "", NOW, False),
        ("s", "1700000000", b"{}", "v1=é", NOW, False),  # non-ASCII: False, not TypeError
        ("s", "", b"{}", sign("s", "", b"{}"), NOW, False),
        ("s", "soon", b"{}", sign("s", "soon", b"{}"), NOW, False),
        ("s", "1.7e9", b"{}", sign("s", "1.7e9", b"{}"), NOW, False),
        ("s", "1700000000", b"{}", sign("s", "1700000000", b"{}"), float("nan"), False),
    ],
)
def test_verify_table(secret: str, ts: str, body: Any, sig: str, now: float, ok: bool) -> None:
    assert verify(secret, ts, body, sig, now) is ok


@given(st.text(min_size=1, max_size=40), st.integers(0, 2**40), st.binary(max_size=500),
       st.integers(-1000, 1000))
def test_verify_accepts_exactly_fresh_own_signatures(secret: str, ts: int, body: bytes, skew: int) -> None:
    sig = sign(secret, str(ts), body)
    assert verify(secret, str(ts), body, sig, ts + skew) is (abs(skew) <= 300)


@given(st.text(max_size=40), st.text(max_size=20), st.binary(max_size=200), st.text(max_size=80),
       st.floats(allow_nan=True, allow_infinity=True))
def test_verify_never_raises(secret: str, ts: str, body: bytes, sig: str, now: float) -> None:
    assert verify(secret, ts, body, sig, now) in (True, False)


@given(st.binary(min_size=1, max_size=200), st.integers(0, 199), st.integers(1, 255))
def test_any_flipped_byte_fails(body: bytes, pos: int, flip: int) -> None:
    pos %= len(body)
    sig = sign("k", str(NOW), body)
    tampered = body[:pos] + bytes([body[pos] ^ flip]) + body[pos + 1 :]
    assert not verify("k", str(NOW), tampered, sig, NOW)


# ---------------------------------------------------------------- mentions: the routing option


MENTION_ROUTING = {
    "receivers": {"slack:ops": {"allow_mentions": True}, "telegram:oncall": {"allow_mentions": True}},
    "destinations": {"slack:ops": {"webhook_env": "OPS_SLACK"}, "slack:quiet": {"webhook_env": "OPS_SLACK"},
                     "telegram:oncall": {"token_env": "TG_TOKEN", "chat_id_env": "TG_CHAT"}},
}


def test_allow_mentions_reaches_only_the_destinations_that_say_so() -> None:
    policy = parse_policy(MENTION_ROUTING)
    assert policy.policy_for("slack:ops").allow_mentions
    assert not policy.policy_for("slack:quiet").allow_mentions  # off by default
    env = {"OPS_SLACK": "https://hooks.slack.com/services/X/Y/Z", "TG_TOKEN": "9:tok", "TG_CHAT": "-100"}
    chans = build_channels(settings(webhook_default_url="http://127.0.0.1:9/h"), policy, env=env)
    assert chans["slack:ops"].allow_mentions and chans["telegram:oncall"].allow_mentions  # type: ignore[attr-defined]
    assert not chans["slack:quiet"].allow_mentions  # type: ignore[attr-defined]
    assert not chans["webhook:default"].allow_mentions  # type: ignore[attr-defined]


def test_allow_mentions_from_the_default_receiver_touches_only_slack_and_telegram() -> None:
    policy = parse_policy({"receivers": {"default": {"allow_mentions": True}},
                           "destinations": {"slack:ops": {"webhook_env": "OPS_SLACK"}}})
    chans = build_channels(settings(webhook_default_url="http://127.0.0.1:9/h"), policy,
                           env={"OPS_SLACK": "https://hooks.slack.com/services/X/Y/Z"})
    assert chans["slack:ops"].allow_mentions  # type: ignore[attr-defined]
    assert not chans["webhook:default"].allow_mentions  # type: ignore[attr-defined]
    assert not chans["console:default"].allow_mentions  # type: ignore[attr-defined]


@pytest.mark.parametrize(("receivers", "error"), [
    ({"slack:ops": {"allow_mentions": "yes"}}, "receivers.slack:ops.allow_mentions: true or false"),
    ({"slack:ops": {"allow_mentions": 1}}, "receivers.slack:ops.allow_mentions: true or false"),
    ({"default": {"allow_mentions": "true"}}, "receivers.default.allow_mentions: true or false"),
    ({"email:risk": {"allow_mentions": True}}, "receivers.email:risk.allow_mentions: only for slack and telegram"),
    ({"webhook:x": {"allow_mentions": False}}, "receivers.webhook:x.allow_mentions: only for slack and telegram"),
])
def test_allow_mentions_is_validated_where_the_routing_file_is_loaded(receivers: dict[str, Any], error: str) -> None:
    from tocsin.errors import RoutingError

    with pytest.raises(RoutingError) as exc:
        parse_policy({"receivers": receivers})
    assert error in str(exc.value)


def test_slack_render_escapes_the_summary_unless_mentions_are_allowed() -> None:
    cmd = command("<!channel> @here see <http://evil|click>", {"who": "<@U1234>"}, account_id="<!here>")
    quiet = json.dumps(slack_render(cmd))
    assert "<!" not in quiet and "<@" not in quiet and "<http" not in quiet
    assert "&lt;!channel&gt; @\u2060here see &lt;http://evil|click&gt;" in slack_render(cmd)["text"]
    loud = slack_render(cmd, allow_mentions=True)
    assert loud["text"] == "[SEV1] <!channel> @here see &lt;http://evil|click&gt;"
    rest = json.dumps(loud["blocks"][1:])  # fields and details stay escaped
    assert "<!here>" not in rest and "<@U1234>" not in rest


def test_telegram_body_is_plain_text_with_mentions_broken() -> None:
    cmd = command('@admin <a href="http://evil">click</a> [x](http://evil)', source="@svc")
    ch = TelegramChannel("telegram:default", "123:SECRET", "42", "http://127.0.0.1:1/")
    body = json.loads(ch.body(cmd))
    assert "parse_mode" not in body  # the HTML and Markdown above are shown as typed
    assert '@\u2060admin <a href="http://evil">click</a> [x](http://evil)' in body["text"]
    assert "source: @\u2060svc" in body["text"]
    ch.allow_mentions = True
    text = json.loads(ch.body(cmd))["text"]
    assert "@admin <a" in text and "source: @\u2060svc" in text  # only the summary's are live


# ---------------------------------------------------------------- what a result tells the breaker


@pytest.mark.parametrize(("ok", "retryable", "reason", "outcome"), [
    (True, False, Reason.OK, True),
    (False, False, Reason.CLIENT_ERROR, True),  # a permanent 4xx: the endpoint is up
    (False, False, Reason.CONFIG, True),
    (False, True, Reason.SERVER_ERROR, False),
    (False, True, Reason.RATE_LIMITED, False),
    (False, True, Reason.TIMEOUT, False),
    (False, True, Reason.CONNECTION, False),
    (False, True, Reason.UNKNOWN, False),
    (False, False, Reason.INVALID_MESSAGE, None),  # never sent: says nothing of the endpoint
    (False, True, Reason.CIRCUIT_OPEN, None),
])
def test_breaker_outcome_table(ok: bool, retryable: bool, reason: Reason, outcome: bool | None) -> None:
    assert breaker_outcome(ok, retryable, reason) is outcome


@given(st.lists(st.sampled_from([Reason.INVALID_MESSAGE, Reason.OK, Reason.SERVER_ERROR]), max_size=40),
       st.integers(1, 4), st.sampled_from([0.0, 2.0, 10.0]))
def test_unbuildable_messages_change_nothing_the_breaker_decides(reasons: list[Reason], threshold: int,
                                                                 reset: float) -> None:
    """Sends as the deliver agent makes them (allow, send, record the outcome), with and without
    the unbuildable messages among them: the others are let through or held alike."""

    def run(keep_unbuildable: bool) -> tuple[list[bool], int]:
        br, decided = CircuitBreaker(threshold, reset), []
        for i, reason in enumerate(reasons):
            if reason is Reason.INVALID_MESSAGE and not keep_unbuildable:
                continue
            allowed = br.allow(float(i))
            if reason is not Reason.INVALID_MESSAGE:
                decided.append(allowed)
            if allowed:
                br.record(breaker_outcome(reason is Reason.OK, reason is Reason.SERVER_ERROR, reason), float(i))
        return decided, br.failures

    assert run(True) == run(False)


def test_an_unbuildable_probe_gives_the_probe_back() -> None:
    br = CircuitBreaker(1, 30.0)
    br.record(False, 0.0)  # open
    assert br.allow(30.0)  # half open: this send is the probe ...
    br.record(breaker_outcome(False, False, Reason.INVALID_MESSAGE), 30.0)  # ... but was never sent
    assert br.allow(30.5)  # the next send probes at once, not a reset period later
    br.record(True, 31.0)
    assert br.state.value == "closed"
