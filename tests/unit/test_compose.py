"""docker-compose.yml parses, wires the workers to Kafka, ClickHouse and SMTP, and ships no
secret: every token and password must be set by whoever starts it (``${NAME:?...}``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tocsin.errors import ConfigError
from tocsin.streams.settings import Settings, load_settings
from tocsin.streams.webauth import check_exposure, is_loopback

ROOT = Path(__file__).resolve().parents[2]
#: compose's interpolation forms: ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err}, ${NAME?err}
_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
SECRETS = ("TOCSIN_API_TOKEN", "TOCSIN_READ_TOKEN", "CLICKHOUSE_PASSWORD")


class Unset(Exception):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    """What ``docker compose`` makes of a value (the forms this file uses)."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group("name"), m.group("op") or "", m.group("arg") or ""
        value = env.get(name)
        empty = value is None or (value == "" and op.startswith(":"))
        if op.endswith("?") and empty:
            raise Unset(f"{name}: {arg}")
        if op.endswith("-") and empty:
            return arg
        return value or ""

    return _VAR.sub(one, text)


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def worker_env(env: dict[str, str]) -> dict[str, str]:
    return {k: interpolate(str(v), env) for k, v in compose()["services"]["worker"]["environment"].items()}


def test_compose_parses_and_names_real_settings() -> None:
    services = compose()["services"]
    assert {"kafka", "clickhouse", "mailpit", "worker"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    env = services["worker"]["environment"]
    assert env["TOCSIN_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["TOCSIN_CLICKHOUSE_URL"].startswith("http://")
    known = {f"TOCSIN_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= known, set(env) - known
    assert (ROOT / services["worker"]["build"]["dockerfile"]).exists()


def test_no_secret_has_a_default_or_an_empty_value() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for m in _VAR.finditer(text):
        if m.group("name") in SECRETS or re.search(r"TOKEN|PASSWORD|SECRET", m.group("name")):
            assert (m.group("op") or "").endswith("?"), f"{m.group(0)}: a secret must be required, not defaulted"
    for service in compose()["services"].values():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"TOKEN|PASSWORD|SECRET", key):
                assert str(value).strip() not in ("", "''", '""'), f"{key} is empty"
                assert "${" in str(value), f"{key} is written into the file"


@pytest.mark.parametrize(("missing", "service"), [("TOCSIN_API_TOKEN", "worker"), ("TOCSIN_READ_TOKEN", "worker"),
                                                  ("CLICKHOUSE_PASSWORD", "worker"),
                                                  ("CLICKHOUSE_PASSWORD", "clickhouse")])
def test_compose_refuses_to_start_without_each_secret(missing: str, service: str) -> None:
    env = {name: "x" * 64 for name in SECRETS if name != missing}
    values = compose()["services"][service]["environment"].values()
    with pytest.raises(Unset, match=missing):
        [interpolate(str(v), env) for v in values]
    with pytest.raises(Unset, match=missing):  # set but empty is unset too (":?")
        [interpolate(str(v), {**env, missing: ""}) for v in values]


def test_the_worker_binds_beyond_loopback_so_it_needs_its_tokens() -> None:
    tokens = {name: f"{name.lower()}-{'7' * 40}" for name in SECRETS}
    env = worker_env(tokens)
    assert not is_loopback(env["TOCSIN_WEB_HOST"])  # the container's web server is on the network
    assert env["TOCSIN_API_TOKEN"] == tokens["TOCSIN_API_TOKEN"]
    assert env["TOCSIN_READ_TOKEN"] == tokens["TOCSIN_READ_TOKEN"]
    overrides = {k.removeprefix("TOCSIN_").lower(): v for k, v in env.items()}
    s = load_settings(**overrides)
    check_exposure(s)  # starts: both tokens set
    assert s.read_token is not None
    # and the same bind without the API token would not start
    with pytest.raises(ConfigError) as err:
        check_exposure(load_settings(**{**overrides, "api_token": ""}))
    assert err.value.setting == "TOCSIN_API_TOKEN"


def test_host_ports_are_published_on_loopback_only() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
