"""docker-compose.yml parses and wires the workers to Kafka, ClickHouse and SMTP."""

from __future__ import annotations

from pathlib import Path

import yaml

from tocsin.streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_compose_parses_and_names_real_settings() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"kafka", "clickhouse", "mailpit", "worker"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    env = services["worker"]["environment"]
    assert env["TOCSIN_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["TOCSIN_CLICKHOUSE_URL"].startswith("http://")
    known = {f"TOCSIN_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= known, set(env) - known
    assert (ROOT / services["worker"]["build"]["dockerfile"]).exists()
