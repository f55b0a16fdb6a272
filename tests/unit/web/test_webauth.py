"""Who may use which HTTP surface (streams/webauth.py): a table of cases and properties."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tocsin.core.settings import load_settings
from tocsin.errors import ConfigError
from tocsin.web.auth import Surface, Tokens, check_exposure, decide, is_loopback, surface_of

API, READ, INGEST = "api-secret", "read-secret", "ingest-secret"
BOTH = Tokens(API, READ)
NONE = Tokens()
H = {"Host": "127.0.0.1:6066"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def bearer(t: str) -> dict[str, str]:
    return {**H, "Authorization": f"Bearer {t}"}


JSON = {"Content-Type": "application/json", "Content-Length": "2"}

CASES = [
    # method, path, headers, tokens, status (0 = through)
    ("GET", "/health", {**H}, BOTH, 0),
    ("GET", "/metrics", {**H}, BOTH, 0),
    ("GET", "/", {**H}, BOTH, 0),
    ("GET", "/static/app.js", {**H}, BOTH, 0),
    # reads: open on a loopback worker with no token, else the read or the API token
    ("GET", "/api/alerts", {**H}, NONE, 0),
    ("GET", "/api/alerts", {**H}, BOTH, 401),
    ("GET", "/api/alerts", bearer("wrong"), BOTH, 401),
    ("GET", "/api/alerts", bearer(READ), BOTH, 0),
    ("GET", "/api/alerts/stats", bearer(API), BOTH, 0),
    ("GET", "/api/alerts/stats", bearer(API), Tokens(API), 0),
    # SQL: never without a configured token
    ("POST", "/api/sql", {**H, **JSON}, NONE, 403),
    ("POST", "/api/sql", {**H, **JSON}, BOTH, 401),
    ("POST", "/api/sql", {**bearer(READ), **JSON}, BOTH, 0),
    ("POST", "/api/sql", {**bearer(API), **JSON}, BOTH, 0),
    ("GET", "/api/sql/stats", {**H}, NONE, 403),
    # writes: the API token only
    ("POST", "/api/alerts/x:1/resolve", {**H, **JSON}, NONE, 403),
    ("POST", "/api/alerts/x:1/resolve", {**bearer(READ), **JSON}, BOTH, 403),
    ("POST", "/api/alerts/x:1/resolve", {**bearer("nope"), **JSON}, BOTH, 401),
    ("POST", "/api/alerts/x:1/resolve", {**bearer(API), **JSON}, BOTH, 0),
    ("POST", "/api/alerts/x:1/resolve", {**bearer(API), "Content-Length": "0"}, BOTH, 0),
    # Faust's own views and anything unknown: the API token, always
    ("GET", "/router/", {**H}, NONE, 403),
    ("GET", "/router/", {**H}, BOTH, 401),
    ("GET", "/table/status/", bearer(READ), BOTH, 403),
    ("GET", "/table/", bearer(API), BOTH, 0),
    ("GET", "/stats/", {**H}, Tokens(API), 401),
    # cross-site
    ("GET", "/api/alerts", {**H, "Origin": "http://evil.example"}, NONE, 403),
    ("GET", "/api/alerts", {**H, "Origin": "null"}, NONE, 403),
    ("GET", "/api/alerts", {**H, "Origin": "http://127.0.0.1:6066"}, NONE, 0),
    ("GET", "/api/alerts", {**H, "Sec-Fetch-Site": "cross-site"}, NONE, 403),
    ("POST", "/api/alerts/x:1/resolve", {**bearer(API), "Content-Type": "text/plain", "Content-Length": "2"}, BOTH, 415),
    ("POST", "/api/sql", {**bearer(API), "Content-Type": "application/x-www-form-urlencoded", "Content-Length": "9"}, BOTH, 415),
    ("POST", "/api/alerts/x:1/resolve", {**bearer(API), **JSON, "Content-Type": "application/json; charset=utf-8"}, BOTH, 0),
    # DNS rebinding: with no token only loopback Host names
    ("GET", "/api/alerts", {"Host": "evil.example:6066"}, NONE, 403),
    ("GET", "/api/alerts", {"Host": "localhost:6066"}, NONE, 0),
    ("GET", "/api/alerts", {"Host": "[::1]:6066"}, NONE, 0),
    ("GET", "/api/alerts", {"Host": "tocsin.internal", "Authorization": f"Bearer {READ}"}, BOTH, 0),
    # ingest (Alertmanager and PagerDuty clients): the ingest or the API token, bearer or basic
    ("POST", "/api/v2/alerts", {**H, **JSON}, NONE, 403),
    ("POST", "/api/v2/alerts", {**H, **JSON}, Tokens(ingest_open=True), 0),
    ("POST", "/api/v2/alerts", {**H, **JSON}, Tokens(INGEST), 401),
    ("POST", "/api/v2/alerts", {**bearer(INGEST), **JSON}, Tokens(INGEST), 0),
    ("POST", "/api/v1/alerts", {**bearer(API), **JSON}, Tokens(API, ingest=INGEST), 0),
    ("POST", "/v2/enqueue", {**bearer(READ), **JSON}, Tokens(API, READ, INGEST), 401),
    ("POST", "/api/ingest/alertmanager", {**H, **JSON, "Authorization": "Basic " + b64(f"prom:{INGEST}")},
     Tokens(ingest=INGEST), 0),
    ("POST", "/api/ingest/alertmanager", {**H, **JSON, "Authorization": "Basic " + b64("prom:nope")},
     Tokens(ingest=INGEST), 401),
    ("POST", "/api/ingest/alertmanager", {**H, **JSON, "Authorization": "Basic !!"}, Tokens(ingest=INGEST), 401),
    ("POST", "/api/v2/alerts", {**bearer(INGEST), "Content-Type": "text/plain", "Content-Length": "2"},
     Tokens(ingest=INGEST), 415),
    ("GET", "/api/v2/status", {**H}, BOTH, 0),
    ("GET", "/-/ready", {**H}, BOTH, 0),
    ("GET", "/-/healthy", {**H}, BOTH, 0),
    # silences (amtool): reading them is the read surface, setting and expiring them a write
    ("GET", "/api/v2/silences", bearer(READ), BOTH, 0),
    ("GET", "/api/v2/silences", {**H}, BOTH, 401),
    ("GET", "/api/v2/silence/0f1e", {**H}, NONE, 0),
    ("POST", "/api/v2/silences", {**bearer(READ), **JSON}, BOTH, 403),
    ("POST", "/api/v2/silences", {**bearer(API), **JSON}, BOTH, 0),
    ("POST", "/api/v2/silences", {**H, **JSON}, NONE, 403),
    ("DELETE", "/api/v2/silence/0f1e", bearer(READ), BOTH, 403),
    ("DELETE", "/api/v2/silence/0f1e", bearer(API), BOTH, 0),
    ("DELETE", "/api/v2/silence/0f1e", {**H}, NONE, 403),
]


@pytest.mark.parametrize(("method", "path", "headers", "tokens", "status"), CASES)
def test_decide(method: str, path: str, headers: dict[str, str], tokens: Tokens, status: int) -> None:
    verdict = decide(method, path, headers, tokens)
    assert verdict.status == status, verdict.error
    assert API not in verdict.error and READ not in verdict.error and INGEST not in verdict.error


def test_allowed_hosts() -> None:
    assert decide("GET", "/api/alerts", {"Host": "box.lan:6066"}, NONE, frozenset({"box.lan"})).allowed
    assert not decide("GET", "/api/alerts", {"Host": "other.lan"}, NONE, frozenset({"box.lan"})).allowed


paths = st.sampled_from(["/api/sql", "/api/sql/stats", "/api/alerts/a/resolve", "/router/", "/table/x/",
                         "/api/alerts", "/x", "/static/../api/sql"]) | st.text(max_size=30).map(lambda t: "/" + t)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"])


@given(methods, paths, st.text(max_size=40))
def test_no_token_never_reaches_sql_writes_or_admin(method: str, path: str, given_token: str) -> None:
    headers = {**H, "Authorization": f"Bearer {given_token}", "Content-Type": "application/json"}
    verdict = decide(method, path, headers, NONE)
    if surface_of(method, path) in (Surface.SQL, Surface.WRITE, Surface.ADMIN):
        assert verdict.status == 403


@given(methods, paths, st.text(max_size=40).filter(lambda t: t.strip() not in (API, READ)))
def test_a_wrong_token_reaches_only_open_surfaces(method: str, path: str, wrong: str) -> None:
    headers = {**H, "Authorization": f"Bearer {wrong}", "Content-Type": "application/json"}
    if decide(method, path, headers, BOTH).allowed:
        assert surface_of(method, path) is Surface.OPEN


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.1:6066", True), ("localhost", True), ("[::1]:1", True), ("::1", True),
    ("127.8.0.1", True), ("0.0.0.0", False), ("10.0.0.1", False), ("example.com", False), ("", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_open_ingest_is_honoured_on_loopback_only() -> None:
    assert Tokens.of(load_settings(ingest_open=True)).ingest_open
    assert not Tokens.of(load_settings(ingest_open=True, web_host="0.0.0.0", api_token="t")).ingest_open


def test_a_worker_beyond_loopback_needs_the_api_token() -> None:
    with pytest.raises(ConfigError, match="TOCSIN_API_TOKEN"):
        check_exposure(load_settings(web_host="0.0.0.0"))
    check_exposure(load_settings(web_host="0.0.0.0", api_token="t"))
    check_exposure(load_settings(web_host="127.0.0.1"))
