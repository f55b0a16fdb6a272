"""Transport security on real servers: Tocsin's Kafka clients and a whole worker over TLS
(mutual TLS included) through a TLS-terminating proxy in front of the embedded broker, the
plain path against the embedded broker as before, SASL/SCRAM refused without a secret in
the logs, and ClickHouse over https with the CA settings.

The embedded broker (Tansu 0.6, memory storage) has no usable SASL: ``--authentication``
needs SCRAM users, and creating one needs an authenticated connection. SASL on a real broker
runs on Kafka in Docker (testcontainers), where an engine is reachable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tocsin.core.settings import Settings, load_settings
from tocsin.core.topics import ensure_topics
from tocsin.errors import StoreError, TocsinError
from tocsin.infra.broker import EmbeddedBroker, broker_binary, free_port
from tocsin.infra.clickhouse.store import open_store
from tocsin.infra.kafka import client_kwargs, started, topic_partitions
from tocsin.tools.dlq import read_dlq
from tocsin.tools.replay import replay

from ..certs import KEY_PASSWORD, Certs, make_certs
from .conftest import base_env
from .harness import WorkerProcess
from .tls_proxy import TlsProxy

pytestmark = pytest.mark.integration

PASSWORD = "sasl-Pa55w0rd-never-shown"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def tls_settings(**kw: Any) -> Settings:
    return load_settings(kafka_security_protocol="SSL", **kw)


class TlsKafka:
    """An embedded broker reachable only through a TLS proxy (the broker advertises it)."""

    def __init__(self, tmp: Path, cert: Path, key: Path, client_ca: Path | None = None) -> None:
        port = free_port()
        self.proxy = TlsProxy(port, cert, key, client_ca)
        self.broker = EmbeddedBroker(f"127.0.0.1:{port}", log_path=tmp / "broker.log",
                                     advertised=self.proxy.bootstrap)

    @property
    def bootstrap(self) -> str:
        return self.proxy.bootstrap

    def __enter__(self) -> TlsKafka:
        self.broker.start()
        self.proxy.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.proxy.stop()
        self.broker.stop()


async def round_trip(bootstrap: str, s: Settings, prefix: str) -> list[bytes]:
    """Create the topics, produce two records and read them back, every client with
    ``client_kwargs(s)``: what each operator command and the worker do."""
    sec = client_kwargs(s)
    await ensure_topics(bootstrap, prefix, 1, security=sec)
    topic = f"{prefix}.alerts"
    p = await started(AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **sec), bootstrap, 10)
    try:
        for v in (b"one", b"two"):
            await p.send_and_wait(topic, v, key=b"k")
    finally:
        await p.stop()
    c = await started(AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **sec), bootstrap, 10)
    try:
        tps = await topic_partitions(c, topic)
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        got: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(got) < 2 and time.monotonic() < deadline:
            for msgs in (await c.getmany(timeout_ms=500)).values():
                got += [m.value for m in msgs]
        return got
    finally:
        await c.stop()


# --------------------------------------------------------------------------- plain


async def test_plaintext_path_still_works_on_the_embedded_broker(broker: EmbeddedBroker) -> None:
    s = load_settings(kafka_bootstrap=broker.bootstrap)
    assert client_kwargs(s) == {"security_protocol": "PLAINTEXT"}
    prefix = "p" + uuid.uuid4().hex[:6]
    assert await round_trip(broker.bootstrap, s, prefix) == [b"one", b"two"]
    summary = await replay(broker.bootstrap, f"{prefix}.alerts", None, None, None, True, security=client_kwargs(s))
    assert summary.messages == 2
    assert await read_dlq(broker.bootstrap, f"{prefix}.dlq", timeout_s=5, security=client_kwargs(s)) == []


# --------------------------------------------------------------------------- TLS

TLS_CASES: list[tuple[str, str, dict[str, str], bool]] = [
    # (name, which proxy, the client's settings, connects)
    ("CA file", "server", {"kafka_ssl_cafile": "ca"}, True),
    ("another CA", "server", {"kafka_ssl_cafile": "other_ca"}, False),
    ("system CAs", "server", {}, False),
    ("name mismatch", "localhost_only", {"kafka_ssl_cafile": "ca"}, False),
    ("name mismatch, hostname check off", "localhost_only",
     {"kafka_ssl_cafile": "ca", "kafka_ssl_check_hostname": "false"}, True),
    ("mutual TLS without a certificate", "mtls", {"kafka_ssl_cafile": "ca"}, False),
    ("mutual TLS", "mtls", {"kafka_ssl_cafile": "ca", "kafka_ssl_certfile": "client",
                            "kafka_ssl_keyfile": "client_key"}, True),
    ("mutual TLS, encrypted key", "mtls", {"kafka_ssl_cafile": "ca", "kafka_ssl_certfile": "client",
                                           "kafka_ssl_keyfile": "client_key_encrypted",
                                           "kafka_ssl_key_password": KEY_PASSWORD}, True),
]


def tls_kafka(kind: str, certs: Certs, tmp: Path) -> TlsKafka:
    if kind == "localhost_only":
        return TlsKafka(tmp, certs.localhost_only, certs.localhost_only_key)
    return TlsKafka(tmp, certs.server, certs.server_key, certs.ca if kind == "mtls" else None)


@pytest.mark.parametrize(("kind", "client", "connects"), [c[1:] for c in TLS_CASES], ids=[c[0] for c in TLS_CASES])
async def test_tls_clients(certs: Certs, tmp_path: Path, kind: str, client: dict[str, str], connects: bool) -> None:
    files = {"ca", "other_ca", "client", "client_key", "client_key_encrypted"}
    s = tls_settings(**{k: (getattr(certs, v) if v in files else v) for k, v in client.items()})
    with tls_kafka(kind, certs, tmp_path) as kafka:
        if connects:
            assert await round_trip(kafka.bootstrap, s, "t" + uuid.uuid4().hex[:6]) == [b"one", b"two"]
            assert kafka.proxy.handshakes >= 2
        else:
            with pytest.raises(TocsinError, match=f"cannot reach Kafka at {kafka.bootstrap} over SSL"):
                await started(AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, **client_kwargs(s)),
                              kafka.bootstrap, 5)
            assert kafka.proxy.handshakes == 0


async def test_a_plaintext_client_cannot_talk_to_the_tls_listener(certs: Certs, tmp_path: Path) -> None:
    """What a client made without ``client_kwargs`` would meet: so the worker test below fails
    if any of its clients is."""
    with tls_kafka("server", certs, tmp_path) as kafka:
        with pytest.raises(TocsinError, match="cannot reach Kafka"):
            await started(AIOKafkaProducer(bootstrap_servers=kafka.bootstrap), kafka.bootstrap, 5)


def _cli(env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tocsin.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


async def test_a_worker_and_the_commands_over_mutual_tls(certs: Certs, tmp_path: Path) -> None:
    """Faust's consumer, producer and admin client, the alert and delivery readers, the
    recovery probe, the DLQ gauge, ``tocsin send``, ``dlq list`` and ``replay``: every one
    through the TLS proxy, each presenting the client certificate."""
    prefix = "m" + uuid.uuid4().hex[:6]
    with tls_kafka("mtls", certs, tmp_path) as kafka:
        env = base_env(kafka.bootstrap, prefix, tmp_path)
        env.update({"TOCSIN_WEB_PORT": str(free_port()), "TOCSIN_KAFKA_SECURITY_PROTOCOL": "SSL",
                    "TOCSIN_KAFKA_SSL_CAFILE": str(certs.ca), "TOCSIN_KAFKA_SSL_CERTFILE": str(certs.client),
                    "TOCSIN_KAFKA_SSL_KEYFILE": str(certs.client_key_encrypted),
                    "TOCSIN_KAFKA_SSL_KEY_PASSWORD": KEY_PASSWORD})
        worker = WorkerProcess(env, tmp_path / "worker.log").start()
        try:
            await worker.wait_ready(120)
            sent = await asyncio.to_thread(_cli, env, "send", "--type", "db_write_fail", "--severity", "2",
                                           "--summary", "over TLS", "--fingerprint", "tls:1")
            assert sent.returncode == 0, sent.stderr
            alert_id = json.loads(sent.stdout)["alert_id"]
            jsonl = tmp_path / "notifications.jsonl"
            deadline = time.monotonic() + 60
            while not (jsonl.exists() and alert_id in jsonl.read_text()) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert jsonl.exists() and alert_id in jsonl.read_text(), worker.log_tail()
            listed = await asyncio.to_thread(_cli, env, "dlq", "list")
            assert listed.returncode == 0, listed.stderr
            dry = await asyncio.to_thread(_cli, env, "replay", "--topic", f"{prefix}.alerts", "--dry-run")
            assert dry.returncode == 0 and "would replay 1 messages" in dry.stdout, dry.stderr
        finally:
            worker.stop()
        log = (tmp_path / "worker.log").read_text()
        assert KEY_PASSWORD not in log
        assert "(SSL)" in log  # the worker says how it talks to Kafka


async def test_commands_fail_in_one_line_when_tls_is_refused(certs: Certs, tmp_path: Path) -> None:
    with tls_kafka("mtls", certs, tmp_path) as kafka:
        env = base_env(kafka.bootstrap, "x", tmp_path)
        env.update({"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SSL", "TOCSIN_KAFKA_SSL_CAFILE": str(certs.ca)})
        sent = await asyncio.to_thread(_cli, env, "send", "--type", "x", "--severity", "3", "--summary", "s")
    assert sent.returncode == 1
    assert f"tocsin: error: cannot reach Kafka at {kafka.bootstrap} over SSL" in sent.stderr
    assert "Traceback" not in sent.stderr


def test_bad_configuration_stops_a_command_with_the_setting_name(tmp_path: Path) -> None:
    env = base_env("127.0.0.1:1", "x", tmp_path)
    env.update({"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "TOCSIN_KAFKA_SASL_USERNAME": "tocsin",
                "TOCSIN_KAFKA_SASL_PASSWORD": PASSWORD})
    for args in (("send", "--type", "x", "--severity", "3", "--summary", "s"), ("worker",), ("dev",)):
        out = _cli(env, *args, timeout=60)
        assert out.returncode != 0
        assert out.stderr.strip().splitlines() == [
            "tocsin: error: TOCSIN_KAFKA_SASL_MECHANISM: required with TOCSIN_KAFKA_SECURITY_PROTOCOL=SASL_SSL "
            "(PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"], args
        assert PASSWORD not in out.stdout + out.stderr


def test_dev_refuses_a_security_protocol_its_broker_cannot_speak(tmp_path: Path, certs: Certs) -> None:
    env = base_env(f"127.0.0.1:{free_port()}", "x", tmp_path)
    env.update({"TOCSIN_KAFKA_SECURITY_PROTOCOL": "SSL", "TOCSIN_KAFKA_SSL_CAFILE": str(certs.ca)})
    out = _cli(env, "dev", timeout=60)
    assert out.returncode == 1
    assert "TOCSIN_KAFKA_SECURITY_PROTOCOL: the embedded broker speaks PLAINTEXT only" in out.stderr


# --------------------------------------------------------------------------- SASL


@pytest.fixture
def scram_broker(tmp_path: Path) -> Iterator[str]:
    """The embedded broker requiring SASL (SCRAM only), with no user: every login is refused."""
    port = free_port()
    log = open(tmp_path / "scram-broker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([broker_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
                             "--advertised-listener-url", f"tcp://127.0.0.1:{port}",
                             "--storage-engine", "memory://tansu/", "--authentication"],
                            stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "warn"})
    try:
        from tocsin.infra.broker import port_open

        deadline = time.monotonic() + 15
        while not port_open("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
async def test_refused_sasl_login_fails_without_the_password_in_logs(
        scram_broker: str, caplog: pytest.LogCaptureFixture, mechanism: str) -> None:
    s = load_settings(kafka_bootstrap=scram_broker, kafka_security_protocol="SASL_PLAINTEXT",
                      kafka_sasl_mechanism=mechanism, kafka_sasl_username="tocsin", kafka_sasl_password=PASSWORD)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TocsinError) as err:
        await started(AIOKafkaProducer(bootstrap_servers=scram_broker, **client_kwargs(s)), scram_broker, 10)
    assert str(err.value).startswith(f"cannot reach Kafka at {scram_broker} over SASL_PLAINTEXT")
    assert any("sasl" in r.getMessage().lower() or "authenticat" in r.getMessage().lower()
               or r.name.startswith("aiokafka") for r in caplog.records)
    assert PASSWORD not in caplog.text and PASSWORD not in str(err.value)


def _docker_reason() -> str | None:
    from .test_clickhouse_queries import _docker_reason as reason

    found = reason()
    if found:
        return (f"SASL needs a real Kafka: the embedded Tansu broker cannot hold SASL users "
                f"(memory storage; creating one needs an authenticated connection). {found}")
    return None


@pytest.fixture(scope="module")
def sasl_kafka() -> Iterator[str]:
    """Apache Kafka (KRaft) with a SASL_PLAINTEXT listener: users tocsin (PLAIN)."""
    reason = _docker_reason()
    if reason:
        pytest.skip(reason)
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    port = free_port()
    jaas = ('org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" '
            f'password="admin-secret" user_admin="admin-secret" user_tocsin="{PASSWORD}";')
    env = {
        "KAFKA_NODE_ID": "1", "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "SASL_PLAINTEXT://:9092,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"SASL_PLAINTEXT://127.0.0.1:{port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "SASL_PLAINTEXT",
        "KAFKA_SASL_ENABLED_MECHANISMS": "PLAIN", "KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL": "PLAIN",
        "KAFKA_LISTENER_NAME_SASL__PLAINTEXT_PLAIN_SASL_JAAS_CONFIG": jaas,
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1", "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    }
    container = DockerContainer("apache/kafka:3.9.0").with_bind_ports(9092, port)
    for k, v in env.items():
        container = container.with_env(k, v)
    with container:
        wait_for_logs(container, "Kafka Server started", timeout=120)
        yield f"127.0.0.1:{port}"


@pytest.mark.docker
async def test_sasl_plain_on_real_kafka(sasl_kafka: str, caplog: pytest.LogCaptureFixture) -> None:
    good = load_settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN",
                         kafka_sasl_username="tocsin", kafka_sasl_password=PASSWORD)
    assert await round_trip(sasl_kafka, good, "s" + uuid.uuid4().hex[:6]) == [b"one", b"two"]
    bad = load_settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN",
                        kafka_sasl_username="tocsin", kafka_sasl_password="not-" + PASSWORD)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TocsinError, match="over SASL_PLAINTEXT"):
        await started(AIOKafkaProducer(bootstrap_servers=sasl_kafka, **client_kwargs(bad)), sasl_kafka, 15)
    assert PASSWORD not in caplog.text


# --------------------------------------------------------------------------- ClickHouse over https


class _StubClickHouse(BaseHTTPRequestHandler):
    """Answers every request as ClickHouse refusing the login: enough to tell a request that
    arrived over a verified TLS connection from one that did not."""

    seen: list[str] = []

    def _answer(self) -> None:
        self.seen.append(self.headers.get("X-ClickHouse-User") or self.headers.get("Authorization") or "?")
        body = b"Code: 516. DB::Exception: stub: Authentication failed. (AUTHENTICATION_FAILED)"
        self.send_response(403)
        self.send_header("Content-Type", "text/plain")
        self.send_header("X-ClickHouse-Exception-Code", "516")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer  # noqa: N815

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
async def https_stub(certs: Certs) -> AsyncIterator[tuple[int, list[str]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubClickHouse)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs.server, certs.server_key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    seen: list[str] = []
    _StubClickHouse.seen = seen
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # verify=false, on purpose
@pytest.mark.parametrize(("env", "verified"), [
    ({}, False),  # the system CAs do not know the test CA
    ({"clickhouse_ca_cert": "ca"}, True),
    ({"clickhouse_verify": "false"}, True),
])
async def test_clickhouse_over_https_uses_the_ca_settings(https_stub: tuple[int, list[str]], certs: Certs,
                                                          env: dict[str, str], verified: bool) -> None:
    port, seen = https_stub
    s = load_settings(clickhouse_url=f"https://analyst:{PASSWORD}@127.0.0.1:{port}/tocsin",
                      **{k: (certs.ca if v == "ca" else v) for k, v in env.items()})
    with pytest.raises(StoreError) as err:
        await asyncio.to_thread(open_store, s.clickhouse_dsn, connect_timeout=3, send_receive_timeout=5)
    message = str(err.value)
    assert PASSWORD not in message
    if verified:  # the TLS handshake passed and ClickHouse (the stub) answered the login
        assert seen and "516" in message, message
    else:
        assert not seen and "certificate" in message.lower(), message
