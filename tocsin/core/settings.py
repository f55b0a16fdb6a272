"""The one settings object: every ``TOCSIN_`` environment variable of DESIGN "Configuration".

Secrets are ``SecretStr``: they print as ``**********`` and never reach logs or records.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..infra.clickhouse.readonly import SqlLimits

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOCSIN_", extra="ignore", case_sensitive=False)

    kafka_bootstrap: str = DEFAULT_BOOTSTRAP
    # Kafka transport security (infra/kafka.py client_kwargs, SECURITY.md)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_ssl_check_hostname: bool = True
    #: the broker is the embedded one (Tansu), whose ListOffsets under-reports a partition's end:
    #: table recovery then reads the true end (infra/faust_compat.true_highwaters). Unset: the
    #: worker asks the broker's cluster id when it first recovers (Tansu's ``tansu_cluster``)
    kafka_embedded: bool | None = None
    topic_prefix: str = Field(default="tocsin", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    partitions: int = Field(default=4, ge=1, le=256, description="partitions of every Tocsin topic")
    clickhouse_url: str = ""
    #: CA bundle for an https:// ClickHouse URL (else the system's), and whether to verify it
    clickhouse_ca_cert: Path | None = None
    clickhouse_verify: bool = True
    data_dir: Path = Path(".tocsin")
    web_port: int = Field(default=6066, ge=0, le=65535)
    web_host: str = "127.0.0.1"
    worker_id: str = ""
    routing_file: Path | None = None
    throttle_window_s: int = Field(default=600, ge=1)
    throttle_expires_s: int = Field(default=7200, ge=1)
    #: where the throttle and delivery tables live: RocksDB on disk (a restart reads only the
    #: changelog's tail) or memory (a restart replays the whole changelog). The default,
    #: RocksDB, falls back to memory with a warning where rocksdict is not installed
    #: (``effective_table_store``); set explicitly, a missing rocksdict stops the worker
    table_store: Literal["memory", "rocksdb"] = "rocksdb"
    # bounded state (decisions/retention.py): a resolved or dismissed status is forgotten this
    # long after it was closed (ClickHouse keeps it); a delivery state this long after it was
    # written: unset, throttle_expires_s + 2 days (the longest retry schedule is far shorter)
    status_retention_s: int = Field(default=7 * 86400, ge=1)
    delivery_state_retention_s: int | None = Field(default=None, ge=1)
    # an escalation chain is forgotten this long after its last step; unset: per policy, twice
    # its span + ack_timeout_s + an hour (decisions/retention.escalation_retention)
    escalation_retention_s: int | None = Field(default=None, ge=1)
    # bounded input (schemas/validate.py): an alert message's value, before it is parsed, and
    # how far ahead of the worker's clock an event_timestamp may be (the past is not limited)
    max_message_bytes: int = Field(default=65_536, ge=1024, le=64 << 20)
    max_future_skew_s: float = Field(default=300.0, ge=0)

    webhook_default_url: SecretStr | None = None
    webhook_default_secret: SecretStr | None = None
    email_default_to: str | None = None
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "tocsin@localhost"
    smtp_tls: Literal["starttls", "tls", "false"] = "starttls"
    slack_default_webhook: SecretStr | None = None
    telegram_bot_token: SecretStr | None = None
    telegram_chat_id: str | None = None
    telegram_api_base: str = "https://api.telegram.org"
    #: the Events API v2 routing key (integration key) of the ``pagerduty:default`` destination
    pagerduty_routing_key: SecretStr | None = None
    pagerduty_api_base: str = "https://events.pagerduty.com"

    file_channel_path: Path | None = None
    console_enabled: bool = True

    #: bearer token for everything: writes, SQL, reads, Faust's own views (SECURITY.md)
    api_token: SecretStr | None = None
    #: bearer token for reads only: the read API, the dashboard's data, analyst SQL
    read_token: SecretStr | None = None
    #: bearer (or basic auth password) token of the Alertmanager/PagerDuty ingest endpoints
    ingest_token: SecretStr | None = None
    #: ingest without a token; honoured only on a loopback worker (what `make dev` runs)
    ingest_open: bool = False
    #: requests a second each ingest client may send (its address and credential), and at once
    ingest_rate_per_s: float = Field(default=50.0, gt=0, le=1_000_000)
    ingest_burst: int = Field(default=200, ge=1, le=1_000_000)
    #: Host header values the web server answers besides loopback names (DNS rebinding), comma-separated
    web_allowed_hosts: str = ""
    #: largest request body the web server reads
    web_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # analyst SQL (POST /api/sql, tocsin sql): limits the query cannot lift
    sql_max_execution_s: int = Field(default=10, ge=1, le=3600)
    sql_max_result_rows: int = Field(default=100_000, ge=1)
    sql_max_result_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    sql_max_memory_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024 * 1024)

    #: the worker's event loop: uvloop where it is installed (a dependency on Linux and macOS:
    #: less CPU per alert, BENCHMARKS.md), else asyncio's own; "asyncio" forces asyncio's
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"

    # Faust/Kafka timing (see README "Timeouts"): quick joins and restarts on small clusters.
    broker_session_timeout_s: float = 6.0
    broker_heartbeat_interval_s: float = 1.0
    broker_rebalance_timeout_s: float = 6.0
    commit_interval_s: float = 1.0
    #: the readers of the alert and delivery topics: every alert's way to its receiver
    fetch_max_wait_ms: int = Field(default=10, ge=1, le=5000)
    #: Faust's own consumer (decisions, lifecycle, retries, the status table): none is on an
    #: alert's way to its receiver, and the embedded broker's fetches cost more the longer a
    #: partition is, so these wait longer (BENCHMARKS.md)
    background_fetch_max_wait_ms: int = Field(default=200, ge=1, le=5000)
    #: how long the producer waits for the broker to acknowledge a request before it fails (and
    #: the Outbox sends it again: agents/outbox.py)
    producer_request_timeout_s: float = Field(default=40.0, gt=0, le=3600)
    #: how long the lifecycle API waits for the broker's acknowledgement before it answers 503
    api_ack_timeout_s: float = Field(default=10.0, gt=0, le=600)

    # delivery
    delivery_concurrency: int = Field(default=64, ge=1, le=4096)
    delivery_timeout_s: float = Field(default=10.0, gt=0)
    #: commands read ahead per channel into the priority queue (SEV1 overtakes what is read)
    delivery_read_ahead: int = Field(default=20_000, ge=1)
    #: and their bytes (keys and values): a channel's read-ahead stops at whichever comes first
    delivery_read_ahead_bytes: int = Field(default=64 << 20, ge=1024)
    # recording
    record_batch_rows: int = Field(default=10_000, ge=1)
    record_batch_s: float = Field(default=1.0, gt=0)
    record_enabled: bool = True
    #: ``module:function`` the record agent hands its opened store to, writing through what it
    #: returns (agents/record.py ``store_wrapper``); the integration tests inject ClickHouse
    #: failures with it. Unset in production
    record_store_wrapper: str = Field(default="", pattern=r"^$|^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

    @field_validator("webhook_default_url", "slack_default_webhook", "telegram_bot_token",
                     "smtp_password", "api_token", "read_token", "ingest_token", "webhook_default_secret",
                     "pagerduty_routing_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: object) -> object:
        return None if v == "" else v

    @field_validator("email_default_to", "smtp_host", "telegram_chat_id", "smtp_user", mode="before")
    @classmethod
    def _empty_str_is_unset(cls, v: object) -> object:
        return None if v == "" else v

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _kafka_upper(cls, v: object) -> object:
        return (v.strip().upper() or None) if isinstance(v, str) else v

    @field_validator("kafka_sasl_username", "kafka_sasl_password", "kafka_ssl_cafile", "kafka_ssl_certfile",
                     "kafka_ssl_keyfile", "kafka_ssl_key_password", "clickhouse_ca_cert", "kafka_embedded",
                     mode="before")
    @classmethod
    def _transport_empty_is_unset(cls, v: object) -> object:
        return None if v == "" else v

    @model_validator(mode="after")
    def _transport(self) -> Settings:
        """What the Kafka protocol or the ClickHouse URL would ignore or cannot use fails here,
        named (a ConfigError passes through pydantic as it is)."""
        from ..infra.kafka import check_security

        check_security(self)
        if self.clickhouse_ca_cert is not None:
            if not self.clickhouse_url.strip().lower().startswith("https://"):
                raise ConfigError("TOCSIN_CLICKHOUSE_CA_CERT", "applies to an https:// TOCSIN_CLICKHOUSE_URL only")
            if not self.clickhouse_ca_cert.is_file():
                raise ConfigError("TOCSIN_CLICKHOUSE_CA_CERT", f"no such file: {self.clickhouse_ca_cert}")
        return self

    @property
    def clickhouse_dsn(self) -> str:
        if self.clickhouse_url:
            from ..infra.clickhouse.url import with_tls_options

            return with_tls_options(self.clickhouse_url, self.clickhouse_ca_cert, self.clickhouse_verify)
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def sql_limits(self) -> SqlLimits:
        """What one analyst query may take (``TOCSIN_SQL_*``)."""
        from ..infra.clickhouse.readonly import SqlLimits

        return SqlLimits(self.sql_max_execution_s, self.sql_max_result_rows,
                         self.sql_max_result_bytes, self.sql_max_memory_bytes)

    @property
    def delivery_state_retention(self) -> int:
        """``TOCSIN_DELIVERY_STATE_RETENTION_S``, or throttle_expires_s + 2 days."""
        if self.delivery_state_retention_s is not None:
            return self.delivery_state_retention_s
        return self.throttle_expires_s + 2 * 86400

    @property
    def file_path(self) -> Path:
        return self.file_channel_path or (self.data_dir / "notifications.jsonl")

    @property
    def app_id(self) -> str:
        return f"{self.topic_prefix}-worker"

    def effective_table_store(self, rocksdb_installed: bool | None = None) -> Literal["memory", "rocksdb"]:
        """The table store the worker runs: ``table_store``, but the default RocksDB store falls
        back to memory (the caller warns) where rocksdict is not installed; asked for by name
        (TOCSIN_TABLE_STORE=rocksdb) without it, a ConfigError. ``rocksdb_installed``: whether
        rocksdict imports (default: try it)."""
        if self.table_store == "memory":
            return "memory"
        if rocksdb_installed is None:
            try:
                import rocksdict  # noqa: F401
            except ImportError:
                rocksdb_installed = False
            else:
                rocksdb_installed = True
        if rocksdb_installed:
            return "rocksdb"
        if "table_store" in self.model_fields_set:
            raise ConfigError("TOCSIN_TABLE_STORE", "rocksdb needs the rocksdict package "
                                                    "(pip install rocksdict), or set it to memory")
        return "memory"


def load_settings(**overrides: object) -> Settings:
    """Read the environment; a bad value fails with the variable's name."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        name = "TOCSIN_" + "_".join(str(p) for p in err["loc"]).upper()
        raise ConfigError(name, err["msg"]) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def reset_settings_cache() -> None:
    get_settings.cache_clear()


__all__ = ["Settings", "load_settings", "get_settings", "reset_settings_cache", "DEFAULT_BOOTSTRAP", "os"]
