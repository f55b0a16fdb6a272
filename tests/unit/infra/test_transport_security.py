"""Transport security, as settings become client arguments: Kafka TLS and SASL for aiokafka
(``infra.kafka.client_kwargs``) and Faust (``broker_credentials``), ClickHouse TLS for
clickhouse-connect (``with_tls_options``, ``http_client_kwargs``), URLs as they may be shown
(``redact_url``); bad configuration fails at start with the setting's name; no secret in a
repr, a str, a dump or an error."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from tocsin.core.settings import Settings, load_settings
from tocsin.errors import ConfigError, TocsinError
from tocsin.infra.clickhouse.engines import http_client_kwargs
from tocsin.infra.clickhouse.url import parse_dsn, redact_dsn, with_tls_options
from tocsin.infra.kafka import broker_credentials, client_kwargs, started
from tocsin.infra.redact import redact_url

from ...certs import KEY_PASSWORD, Certs, make_certs

PASSWORD = "sasl-Pa55w0rd-never-shown"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(autouse=True)
def _no_tocsin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("TOCSIN_"):
            monkeypatch.delenv(name)


def from_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], certs: Certs | None = None) -> Settings:
    """The settings as a worker reads them: from the environment (``{ca}`` etc. name test files)."""
    for name, value in env.items():
        if certs is not None:
            value = value.format(ca=certs.ca, cert=certs.client, key=certs.client_key,
                                 enc=certs.client_key_encrypted, dir=certs.dir)
        monkeypatch.setenv(name, value)
    return load_settings()


SASL = {"TOCSIN_KAFKA_SASL_USERNAME": "tocsin", "TOCSIN_KAFKA_SASL_PASSWORD": PASSWORD}

# --------------------------------------------------------------------------- Kafka: the kwargs

KWARGS_CASES: list[tuple[str, dict[str, str], dict[str, Any]]] = [
    ("default", {}, {"security_protocol": "PLAINTEXT"}),
    ("plaintext", {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}, {"security_protocol": "PLAINTEXT"}),
    ("ssl, CA file", {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SSL", "TOCSIN_KAFKA_SSL_CAFILE": "{ca}"},
     {"security_protocol": "SSL", "ssl_context": True}),
    ("ssl, system CAs", {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SSL"}, {"security_protocol": "SSL", "ssl_context": True}),
    ("ssl, client certificate", {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SSL", "TOCSIN_KAFKA_SSL_CAFILE": "{ca}",
                                 "TOCSIN_KAFKA_SSL_CERTFILE": "{cert}", "TOCSIN_KAFKA_SSL_KEYFILE": "{key}"},
     {"security_protocol": "SSL", "ssl_context": True}),
    ("ssl, encrypted key", {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SSL", "TOCSIN_KAFKA_SSL_CERTFILE": "{cert}",
                            "TOCSIN_KAFKA_SSL_KEYFILE": "{enc}", "TOCSIN_KAFKA_SSL_KEY_PASSWORD": KEY_PASSWORD},
     {"security_protocol": "SSL", "ssl_context": True}),
    *[(f"sasl_plaintext {m}", {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "TOCSIN_KAFKA_SASL_MECHANISM": m,
                               **SASL},
       {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": m, "sasl_plain_username": "tocsin",
        "sasl_plain_password": PASSWORD})
      for m in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")],
    *[(f"sasl_ssl {m}", {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "TOCSIN_KAFKA_SASL_MECHANISM": m,
                         "TOCSIN_KAFKA_SSL_CAFILE": "{ca}", **SASL},
       {"security_protocol": "SASL_SSL", "sasl_mechanism": m, "sasl_plain_username": "tocsin",
        "sasl_plain_password": PASSWORD, "ssl_context": True})
      for m in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")],
    ("lower case values", {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "TOCSIN_KAFKA_SASL_MECHANISM": "scram-sha-512",
                           **SASL},
     {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "tocsin",
      "sasl_plain_password": PASSWORD, "ssl_context": True}),
]


@pytest.mark.parametrize(("env", "expected"), [c[1:] for c in KWARGS_CASES], ids=[c[0] for c in KWARGS_CASES])
async def test_client_kwargs_per_protocol_and_aiokafka_takes_them(
        monkeypatch: pytest.MonkeyPatch, certs: Certs, env: dict[str, str], expected: dict[str, Any]) -> None:
    kw = client_kwargs(from_env(monkeypatch, env, certs))
    assert set(kw) == set(expected)
    for key, value in expected.items():
        if key == "ssl_context":
            assert isinstance(kw[key], ssl.SSLContext)
        else:
            assert kw[key] == value, key
    # aiokafka's own checks of the combination (protocol, context, mechanism, credentials) pass
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", **kw)
    assert producer.client._security_protocol == expected["security_protocol"]  # noqa: SLF001
    await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", **kw)
    assert consumer._client._security_protocol == expected["security_protocol"]  # noqa: SLF001
    await consumer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers="127.0.0.1:1", **kw)
    assert admin._client._security_protocol == expected["security_protocol"]  # noqa: SLF001
    await admin.close()


@pytest.mark.parametrize(("env", "expected"), [c[1:] for c in KWARGS_CASES], ids=[c[0] for c in KWARGS_CASES])
def test_faust_gets_the_same_arguments(monkeypatch: pytest.MonkeyPatch, certs: Certs, env: dict[str, str],
                                       expected: dict[str, Any]) -> None:
    """Faust turns ``broker_credentials`` into aiokafka arguments for its own consumer, producer
    and admin client: they must be exactly ours."""
    kw = client_kwargs(from_env(monkeypatch, env, certs))
    creds = broker_credentials(kw)
    assert (creds is None) == (expected["security_protocol"] == "PLAINTEXT")
    given = {k: v for k, v in credentials_to_aiokafka_auth(creds).items() if v is not None}  # None: not given
    assert given == dict(kw)


def test_the_faust_app_is_given_the_credentials(monkeypatch: pytest.MonkeyPatch, certs: Certs) -> None:
    from tocsin.streams.app import make_faust_app

    s = from_env(monkeypatch, {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "TOCSIN_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
                               "TOCSIN_KAFKA_SSL_CAFILE": "{ca}", "TOCSIN_DATA_DIR": "{dir}/data", **SASL}, certs)
    app = make_faust_app(s)
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_mechanism"] == "SCRAM-SHA-256"
    assert auth["sasl_plain_password"] == PASSWORD and isinstance(auth["ssl_context"], ssl.SSLContext)
    assert PASSWORD not in repr(app.conf.broker_credentials)


@pytest.mark.parametrize(("check", "expected"), [("", True), ("true", True), ("false", False), ("0", False)])
def test_tls_context_verifies_the_certificate_and_by_default_the_host(
        monkeypatch: pytest.MonkeyPatch, certs: Certs, check: str, expected: bool) -> None:
    env = {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SSL", "TOCSIN_KAFKA_SSL_CAFILE": "{ca}"}
    if check:
        env["TOCSIN_KAFKA_SSL_CHECK_HOSTNAME"] = check
    ctx = client_kwargs(from_env(monkeypatch, env, certs))["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED  # never off: only the name check is optional
    assert ctx.check_hostname is expected
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "ca"),),)]


# --------------------------------------------------------------------------- bad configuration

BAD_CASES: list[tuple[str, dict[str, str], str]] = [
    ("unknown protocol", {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "TLS"}, "TOCSIN_KAFKA_SECURITY_PROTOCOL"),
    ("unknown mechanism", {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "TOCSIN_KAFKA_SASL_MECHANISM": "GSSAPI", **SASL},
     "TOCSIN_KAFKA_SASL_MECHANISM"),
    ("sasl without mechanism", {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", **SASL}, "TOCSIN_KAFKA_SASL_MECHANISM"),
    ("sasl without user", {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "TOCSIN_KAFKA_SASL_MECHANISM": "PLAIN",
                           "TOCSIN_KAFKA_SASL_PASSWORD": PASSWORD}, "TOCSIN_KAFKA_SASL_USERNAME"),
    ("sasl without password", {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "TOCSIN_KAFKA_SASL_MECHANISM": "PLAIN",
                               "TOCSIN_KAFKA_SASL_USERNAME": "tocsin"}, "TOCSIN_KAFKA_SASL_PASSWORD"),
    ("empty password is no password", {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "TOCSIN_KAFKA_SASL_MECHANISM": "PLAIN",
                                       "TOCSIN_KAFKA_SASL_USERNAME": "tocsin", "TOCSIN_KAFKA_SASL_PASSWORD": ""},
     "TOCSIN_KAFKA_SASL_PASSWORD"),
    ("credentials on plaintext", SASL, "TOCSIN_KAFKA_SECURITY_PROTOCOL"),
    ("credentials on ssl", {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SSL", **SASL}, "TOCSIN_KAFKA_SECURITY_PROTOCOL"),
    ("CA on sasl_plaintext", {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "TOCSIN_KAFKA_SASL_MECHANISM": "PLAIN",
                              "TOCSIN_KAFKA_SSL_CAFILE": "{ca}", **SASL}, "TOCSIN_KAFKA_SECURITY_PROTOCOL"),
    ("no hostname check on plaintext", {"TOCSIN_KAFKA_SSL_CHECK_HOSTNAME": "false"}, "TOCSIN_KAFKA_SECURITY_PROTOCOL"),
    ("key without certificate", {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SSL", "TOCSIN_KAFKA_SSL_KEYFILE": "{key}"},
     "TOCSIN_KAFKA_SSL_CERTFILE"),
    ("missing CA file", {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SSL", "TOCSIN_KAFKA_SSL_CAFILE": "{dir}/nope.pem"},
     "TOCSIN_KAFKA_SSL_CAFILE"),
    ("missing key file", {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SSL", "TOCSIN_KAFKA_SSL_CERTFILE": "{cert}",
                          "TOCSIN_KAFKA_SSL_KEYFILE": "{dir}/nope.key"}, "TOCSIN_KAFKA_SSL_KEYFILE"),
    ("ClickHouse CA for http", {"TOCSIN_CLICKHOUSE_URL": "http://h:8123/tocsin", "TOCSIN_CLICKHOUSE_CA_CERT": "{ca}"},
     "TOCSIN_CLICKHOUSE_CA_CERT"),
    ("ClickHouse CA for chdb", {"TOCSIN_CLICKHOUSE_CA_CERT": "{ca}"}, "TOCSIN_CLICKHOUSE_CA_CERT"),
    ("ClickHouse CA missing", {"TOCSIN_CLICKHOUSE_URL": "https://h:8443/tocsin",
                               "TOCSIN_CLICKHOUSE_CA_CERT": "{dir}/nope.pem"}, "TOCSIN_CLICKHOUSE_CA_CERT"),
    ("ClickHouse verify not a bool", {"TOCSIN_CLICKHOUSE_VERIFY": "maybe"}, "TOCSIN_CLICKHOUSE_VERIFY"),
]


@pytest.mark.parametrize(("env", "setting"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_configuration_fails_at_start_naming_the_setting(
        monkeypatch: pytest.MonkeyPatch, certs: Certs, env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_env(monkeypatch, env, certs)
    assert err.value.setting == setting
    assert str(err.value).startswith(f"{setting}: ")
    assert PASSWORD not in str(err.value)


CONTENT_CASES: list[tuple[str, dict[str, str], str]] = [
    ("CA file is not a certificate", {"TOCSIN_KAFKA_SSL_CAFILE": "{key}"}, "TOCSIN_KAFKA_SSL_CAFILE"),
    ("certificate is not one", {"TOCSIN_KAFKA_SSL_CERTFILE": "{ca}", "TOCSIN_KAFKA_SSL_KEYFILE": "{ca}"},
     "TOCSIN_KAFKA_SSL_CERTFILE"),
    ("key does not match", {"TOCSIN_KAFKA_SSL_CERTFILE": "{ca}", "TOCSIN_KAFKA_SSL_KEYFILE": "{key}"},
     "TOCSIN_KAFKA_SSL_CERTFILE"),
    ("wrong key password", {"TOCSIN_KAFKA_SSL_CERTFILE": "{cert}", "TOCSIN_KAFKA_SSL_KEYFILE": "{enc}",
                            "TOCSIN_KAFKA_SSL_KEY_PASSWORD": "not-" + KEY_PASSWORD}, "TOCSIN_KAFKA_SSL_CERTFILE"),
]


@pytest.mark.parametrize(("env", "setting"), [c[1:] for c in CONTENT_CASES], ids=[c[0] for c in CONTENT_CASES])
def test_files_that_do_not_load_fail_naming_the_setting(
        monkeypatch: pytest.MonkeyPatch, certs: Certs, env: dict[str, str], setting: str) -> None:
    s = from_env(monkeypatch, {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SSL", **env}, certs)
    with pytest.raises(ConfigError) as err:
        client_kwargs(s)
    assert err.value.setting == setting
    assert KEY_PASSWORD not in str(err.value)


def test_the_worker_refuses_to_build_with_a_bad_file(monkeypatch: pytest.MonkeyPatch, certs: Certs) -> None:
    """Start is where it fails: building the app builds the TLS context."""
    from tocsin.streams.app import build

    s = from_env(monkeypatch, {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SSL", "TOCSIN_KAFKA_SSL_CAFILE": "{key}",
                               "TOCSIN_DATA_DIR": "{dir}/data"}, certs)
    with pytest.raises(ConfigError, match="^TOCSIN_KAFKA_SSL_CAFILE: "):
        build(s, record=False)


# --------------------------------------------------------------------------- no secret shown


def test_no_password_in_repr_str_dump_or_credentials(monkeypatch: pytest.MonkeyPatch, certs: Certs) -> None:
    s = from_env(monkeypatch, {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "TOCSIN_KAFKA_SASL_MECHANISM": "PLAIN",
                               "TOCSIN_KAFKA_SSL_CERTFILE": "{cert}", "TOCSIN_KAFKA_SSL_KEYFILE": "{enc}",
                               "TOCSIN_KAFKA_SSL_KEY_PASSWORD": KEY_PASSWORD, **SASL}, certs)
    kw = client_kwargs(s)
    assert kw["sasl_plain_password"] == PASSWORD  # what the client needs...
    shown = [repr(s), str(s), s.model_dump_json(), repr(s.model_dump()), repr(kw), str(kw), f"{kw}", f"{kw!s}",
             repr(broker_credentials(kw))]
    for text in shown:  # ...and nothing else shows
        assert PASSWORD not in text and KEY_PASSWORD not in text, text
    assert "sasl_plain_password" in repr(kw) and "**********" in repr(kw)


async def test_no_password_in_logs_or_the_error_when_kafka_cannot_be_reached(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from tocsin.infra.broker import free_port

    s = from_env(monkeypatch, {"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                               "TOCSIN_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", **SASL})
    bootstrap = f"127.0.0.1:{free_port()}"  # nothing listens
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TocsinError) as err:
        await started(AIOKafkaProducer(bootstrap_servers=bootstrap, **client_kwargs(s)), bootstrap, timeout_s=3)
    assert str(err.value).startswith(f"cannot reach Kafka at {bootstrap}")
    assert caplog.records  # aiokafka did log its attempts
    assert PASSWORD not in caplog.text and PASSWORD not in str(err.value)


# --------------------------------------------------------------------------- ClickHouse TLS

TLS_URL_CASES: list[tuple[str, str | None, bool, str]] = [
    ("https://u:p@h:8443/tocsin", "/etc/ca.pem", True, "https://u:p@h:8443/tocsin?ca_cert=/etc/ca.pem"),
    ("https://h:8443/tocsin", None, False, "https://h:8443/tocsin?verify=false"),
    ("https://h/tocsin?verify=true", None, False, "https://h/tocsin?verify=false"),
    ("https://h/tocsin?ca_cert=/old.pem&compress=1", "/new.pem", True, "https://h/tocsin?compress=1&ca_cert=/new.pem"),
    ("https://h/tocsin?verify=false", None, True, "https://h/tocsin?verify=false"),  # the default changes nothing
    ("https://h/tocsin", None, True, "https://h/tocsin"),
    ("http://h:8123/tocsin", None, False, "http://h:8123/tocsin"),  # no TLS to configure
    ("chdb:///data/ch", None, False, "chdb:///data/ch"),
]


@pytest.mark.parametrize(("url", "ca", "verify", "expected"), TLS_URL_CASES)
def test_clickhouse_tls_settings_become_url_options(url: str, ca: str | None, verify: bool, expected: str) -> None:
    assert with_tls_options(url, Path(ca) if ca else None, verify) == expected


@pytest.mark.parametrize(("env", "ca", "verify"), [
    ({}, False, True),
    ({"TOCSIN_CLICKHOUSE_CA_CERT": "{ca}"}, True, True),
    ({"TOCSIN_CLICKHOUSE_VERIFY": "false"}, False, False),
    ({"TOCSIN_CLICKHOUSE_CA_CERT": "{ca}", "TOCSIN_CLICKHOUSE_VERIFY": "false"}, True, False),
])
def test_clickhouse_tls_settings_reach_get_client(monkeypatch: pytest.MonkeyPatch, certs: Certs,
                                                  env: dict[str, str], ca: bool, verify: bool) -> None:
    s = from_env(monkeypatch, {"TOCSIN_CLICKHOUSE_URL": "https://analyst:pw%40x@ch.example:8443/tocsin", **env}, certs)
    kw = http_client_kwargs(parse_dsn(s.clickhouse_dsn), 3.0, 30.0)
    assert kw["secure"] is True and kw["host"] == "ch.example" and kw["port"] == 8443
    assert kw["username"] == "analyst" and kw["password"] == "pw@x"
    assert kw["verify"] is verify
    assert kw.get("ca_cert") == (str(certs.ca.resolve()) if ca else None)


# --------------------------------------------------------------------------- redact_url

REDACT_CASES = [
    ("http://u:s3cret@h:8123/db?password=x", "http://u:***@h:8123/db?password=***"),
    ("https://analyst:p%40ss@ch:8443/tocsin?verify=false&ca_cert=/etc/ca.pem",
     "https://analyst:***@ch:8443/tocsin?verify=false&ca_cert=/etc/ca.pem"),
    ("https://h/x?access_token=abc&token=def&sig=ghi", "https://h/x?access_token=***&token=***&sig=***"),
    ("https://h/x?Password=abc", "https://h/x?Password=***"),
    ("http://u:s3cret@h/db#s3cret", "http://u:***@h/db"),
    ("http://user@h:8123/db", "http://user@h:8123/db"),
    ("http://h:8123/db", "http://h:8123/db"),
    ("chdb:///abs/path/clickhouse", "chdb:///abs/path/clickhouse"),
    ("http://[::1]:8123/db", "http://[::1]:8123/db"),
    ("127.0.0.1:9092,kafka-2:9092", "127.0.0.1:9092,kafka-2:9092"),
    ("u:s3cret@kafka:9092", "***@kafka:9092"),
    ("http://u:s3cret@h:notaport/db", "<invalid URL>"),
]


@pytest.mark.parametrize(("url", "expected"), REDACT_CASES)
def test_redact_url(url: str, expected: str) -> None:
    out = redact_url(url)
    assert out == expected
    assert "s3cret" not in out and "abc" not in out and "p%40ss" not in out


def test_clickhouse_errors_use_the_same_redaction() -> None:
    assert redact_dsn("http://u:s3cret@h:8123/db?password=x") == "http://u:***@h:8123/db?password=***"
    assert parse_dsn("http://u:s3cret@h:8123/db?password=x").redacted == "http://u:***@h:8123/db?password=***"
