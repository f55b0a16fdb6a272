"""Kafka helpers shared by the worker and the operator commands, and the one place the
transport security of every aiokafka client is decided.

``client_kwargs(settings)`` is what every ``AIOKafkaConsumer``, ``AIOKafkaProducer`` and
``AIOKafkaAdminClient`` Tocsin makes against the configured broker is given (the readers,
the recovery probe, the DLQ gauge, ``tocsin send|replay|dlq|rebuild``, the topic set-up), and
``broker_credentials(kwargs)`` is the same choice in Faust's terms (``broker_credentials=``),
so Faust's own consumer, producer and admin client connect the same way::

    TOCSIN_KAFKA_SECURITY_PROTOCOL   PLAINTEXT (default) | SSL | SASL_PLAINTEXT | SASL_SSL
    TOCSIN_KAFKA_SASL_MECHANISM      PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512   (SASL_* only)
    TOCSIN_KAFKA_SASL_USERNAME / _PASSWORD                                (SASL_* only)
    TOCSIN_KAFKA_SSL_CAFILE / _CERTFILE / _KEYFILE / _KEY_PASSWORD        (SSL, SASL_SSL)
    TOCSIN_KAFKA_SSL_CHECK_HOSTNAME  true (default)

A setting that the chosen protocol would ignore is refused at start rather than silently
unused (credentials set with PLAINTEXT mean the protocol was forgotten). The password is a
``SecretStr`` until the moment a client needs it; the kwargs' repr hides it.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from faust.types.auth import CredentialsT

    from ..core.settings import Settings

#: Kafka's ``security.protocol`` values that speak TLS, and those that authenticate with SASL
TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

_SASL_SETTINGS = {"kafka_sasl_mechanism": "TOCSIN_KAFKA_SASL_MECHANISM",
                  "kafka_sasl_username": "TOCSIN_KAFKA_SASL_USERNAME",
                  "kafka_sasl_password": "TOCSIN_KAFKA_SASL_PASSWORD"}
_TLS_SETTINGS = {"kafka_ssl_cafile": "TOCSIN_KAFKA_SSL_CAFILE",
                 "kafka_ssl_certfile": "TOCSIN_KAFKA_SSL_CERTFILE",
                 "kafka_ssl_keyfile": "TOCSIN_KAFKA_SSL_KEYFILE",
                 "kafka_ssl_key_password": "TOCSIN_KAFKA_SSL_KEY_PASSWORD"}
_PROTOCOL = "TOCSIN_KAFKA_SECURITY_PROTOCOL"


def check_security(s: Settings) -> None:
    """Refuse a Kafka security configuration that cannot work, naming the setting
    (``ConfigError``). Files are checked to exist here; their contents when a client is made."""
    protocol = s.kafka_security_protocol
    if protocol in SASL_PROTOCOLS:
        for field, name in _SASL_SETTINGS.items():
            if getattr(s, field) is None:
                what = f" ({', '.join(SASL_MECHANISMS)})" if field == "kafka_sasl_mechanism" else ""
                raise ConfigError(name, f"required with {_PROTOCOL}={protocol}{what}")
    else:
        for field, name in _SASL_SETTINGS.items():
            if getattr(s, field) is not None:
                raise ConfigError(_PROTOCOL, f"{name} is set but the protocol is {protocol}: "
                                             "use SASL_SSL (or SASL_PLAINTEXT) to authenticate")
    if protocol not in TLS_PROTOCOLS:
        for field, name in _TLS_SETTINGS.items():
            if getattr(s, field) is not None:
                raise ConfigError(_PROTOCOL, f"{name} is set but the protocol is {protocol}: "
                                             "use SSL or SASL_SSL for TLS")
        if not s.kafka_ssl_check_hostname:
            raise ConfigError(_PROTOCOL, f"TOCSIN_KAFKA_SSL_CHECK_HOSTNAME=false is set but the protocol is {protocol}")
        return
    if s.kafka_ssl_keyfile is not None and s.kafka_ssl_certfile is None:
        raise ConfigError("TOCSIN_KAFKA_SSL_CERTFILE", "required with TOCSIN_KAFKA_SSL_KEYFILE")
    if s.kafka_ssl_key_password is not None and s.kafka_ssl_certfile is None:
        raise ConfigError("TOCSIN_KAFKA_SSL_CERTFILE", "required with TOCSIN_KAFKA_SSL_KEY_PASSWORD")
    for field in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
        path = getattr(s, field)
        if path is not None and not path.is_file():
            raise ConfigError(_TLS_SETTINGS[field], f"no such file: {path}")


class ClientKwargs(dict[str, Any]):
    """aiokafka's security keyword arguments; printed, the SASL password shows as stars."""

    def __repr__(self) -> str:
        return repr({k: ("**********" if k == "sasl_plain_password" and v else v) for k, v in self.items()})

    __str__ = __repr__


def ssl_context(s: Settings) -> ssl.SSLContext | None:
    """The TLS context of the SSL and SASL_SSL protocols (None for the others): the CA file
    (else the system's CAs), the client certificate and key when given, hostname checked
    unless TOCSIN_KAFKA_SSL_CHECK_HOSTNAME=false (the certificate is verified either way)."""
    if s.kafka_security_protocol not in TLS_PROTOCOLS:
        return None
    from aiokafka.helpers import create_ssl_context

    try:
        ctx = create_ssl_context(cafile=s.kafka_ssl_cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("TOCSIN_KAFKA_SSL_CAFILE", f"cannot load the CA certificates: {_why(exc)}") from None
    if s.kafka_ssl_certfile is not None:
        password = s.kafka_ssl_key_password.get_secret_value() if s.kafka_ssl_key_password else None
        try:
            ctx.load_cert_chain(s.kafka_ssl_certfile, s.kafka_ssl_keyfile, password)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("TOCSIN_KAFKA_SSL_CERTFILE",
                              f"cannot load the client certificate and key: {_why(exc)}") from None
    if not s.kafka_ssl_check_hostname:
        ctx.check_hostname = False
    return ctx


def _why(exc: BaseException) -> str:
    return getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__


def client_kwargs(s: Settings) -> ClientKwargs:
    """The security keyword arguments of an aiokafka client for the configured broker::

        AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, ..., **client_kwargs(s))

    Raises ``ConfigError`` (with the setting's name) for a CA, certificate or key that does not
    load."""
    protocol = s.kafka_security_protocol
    kw = ClientKwargs(security_protocol=protocol)
    ctx = ssl_context(s)
    if ctx is not None:
        kw["ssl_context"] = ctx
    if protocol in SASL_PROTOCOLS:
        assert s.kafka_sasl_password is not None  # check_security
        kw.update(sasl_mechanism=s.kafka_sasl_mechanism, sasl_plain_username=s.kafka_sasl_username,
                  sasl_plain_password=s.kafka_sasl_password.get_secret_value())
    return kw


def broker_credentials(kw: Mapping[str, Any]) -> CredentialsT | None:
    """``client_kwargs`` as Faust's ``broker_credentials`` (None for PLAINTEXT): Faust turns them
    back into the same aiokafka arguments for its own clients."""
    import faust

    protocol = kw.get("security_protocol", "PLAINTEXT")
    if protocol in SASL_PROTOCOLS:
        return faust.SASLCredentials(username=kw["sasl_plain_username"], password=kw["sasl_plain_password"],
                                     ssl_context=kw.get("ssl_context"), mechanism=kw["sasl_mechanism"])
    if protocol == "SSL":
        return faust.SSLCredentials(kw["ssl_context"])
    return None


async def end_offsets(c: AIOKafkaConsumer, tps: list[TopicPartition], timeout_s: float = 5.0) -> dict[TopicPartition, int]:
    """The next offset to be written per partition (the high watermark).

    The embedded broker (Tansu) answers ListOffsets(latest) with the end of the last record
    batch's *first* record, so a partition written in batches reports too small an end. A fetch
    response carries the true high watermark: fetch once from the reported end and take the
    larger of the two. Leaves ``c`` assigned to ``tps``.
    """
    listed = await c.end_offsets(tps)
    begins = await c.beginning_offsets(tps)
    c.assign(tps)
    probe = [tp for tp in tps if listed[tp] > begins[tp]]
    for tp in probe:
        c.seek(tp, max(begins[tp], listed[tp] - 1))
    result = dict(listed)
    pending = set(probe)
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        await c.getmany(*pending, timeout_ms=200, max_records=1)
        for tp in list(pending):
            hw = c.highwater(tp)
            if hw is not None:
                result[tp] = max(result[tp], hw)
                pending.discard(tp)
        if pending:
            await asyncio.sleep(0)
    return result


async def started(client: Any, bootstrap: str, timeout_s: float = 15.0) -> Any:
    """Start an aiokafka client, or fail with one clear line (and nothing left open)."""
    from ..errors import TocsinError
    from .faust_compat import security_protocol

    try:
        await asyncio.wait_for(client.start(), timeout_s)
    except Exception as exc:
        await client.stop()
        protocol = security_protocol(client)
        why = "" if protocol == "PLAINTEXT" else (
            f" over {protocol} (a refused TLS handshake or SASL authentication ends here too; "
            "aiokafka's log line says which)")
        raise TocsinError(f"cannot reach Kafka at {bootstrap}{why}: {type(exc).__name__}") from None
    return client


async def topic_partitions(c: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic`` (refreshing metadata once); empty if it does not exist."""
    from aiokafka import TopicPartition

    from .faust_compat import refresh_metadata

    parts = c.partitions_for_topic(topic)
    if not parts:
        await refresh_metadata(c)
        parts = c.partitions_for_topic(topic)
    return [TopicPartition(topic, p) for p in sorted(parts or ())]
