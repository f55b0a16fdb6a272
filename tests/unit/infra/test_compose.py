"""docker-compose.yml parses, wires the workers to Kafka, ClickHouse and SMTP, and ships no
secret: every token and password must be set by whoever starts it (``${NAME:?...}``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tocsin.core.settings import Settings, load_settings
from tocsin.errors import ConfigError
from tocsin.web.auth import check_exposure, is_loopback

ROOT = Path(__file__).resolve().parents[3]
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


# --------------------------------------------------------------------------- Grafana

GRAFANA_SECRETS = ("GRAFANA_ADMIN_PASSWORD", "CLICKHOUSE_GRAFANA_PASSWORD")
DATASOURCE_FILE = ROOT / "docker/grafana/provisioning/datasources/clickhouse.yaml"
DASHBOARD_FILE = ROOT / "docker/grafana/dashboards/tocsin.json"


def test_grafana_is_provisioned_with_the_clickhouse_plugin() -> None:
    services = compose()["services"]
    g = services["grafana"]
    assert g["image"].startswith("grafana/grafana:")
    assert g["environment"]["GF_INSTALL_PLUGINS"].startswith("grafana-clickhouse-datasource ")
    assert g["environment"]["GF_USERS_ALLOW_SIGN_UP"] == "false" and g["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    mounts = {v.split(":")[1]: ROOT / v.split(":")[0] for v in g["volumes"]}
    assert mounts["/etc/grafana/provisioning"].is_dir() and mounts["/var/lib/grafana/dashboards"].is_dir()
    assert g["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == "/var/lib/grafana/dashboards/tocsin.json"
    ch = {v.split(":")[1]: ROOT / v.split(":")[0] for v in services["clickhouse"]["volumes"]}
    assert ch["/etc/clickhouse-server/users.d/grafana.xml"].is_file()


@pytest.mark.parametrize(("missing", "service"), [(s, svc) for s in GRAFANA_SECRETS for svc in ("grafana", "clickhouse")
                                                  if not (s == "GRAFANA_ADMIN_PASSWORD" and svc == "clickhouse")])
def test_compose_refuses_to_start_grafana_without_its_secrets(missing: str, service: str) -> None:
    env = {name: "x" * 32 for name in (*SECRETS, *GRAFANA_SECRETS) if name != missing}
    values = compose()["services"][service]["environment"].values()
    with pytest.raises(Unset, match=missing):
        [interpolate(str(v), env) for v in values]
    with pytest.raises(Unset, match=missing):
        [interpolate(str(v), {**env, missing: ""}) for v in values]


def test_grafana_reads_clickhouse_as_a_read_only_user_whose_password_is_not_in_any_file() -> None:
    import xml.etree.ElementTree as ET

    ds = yaml.safe_load(DATASOURCE_FILE.read_text())["datasources"]
    (source,) = ds
    assert source["type"] == "grafana-clickhouse-datasource" and source["uid"] == "tocsin-clickhouse"
    assert source["jsonData"]["host"] == "clickhouse" and source["jsonData"]["defaultDatabase"] == "tocsin"
    assert source["secureJsonData"]["password"] == "${CLICKHOUSE_GRAFANA_PASSWORD}"  # Grafana reads the env
    user = source["jsonData"]["username"]
    users = ET.parse(ROOT / "docker/clickhouse/users.d/grafana.xml").getroot()
    u = users.find(f"users/{user}")
    assert u is not None
    password = u.find("password")
    assert password is not None and password.get("from_env") == "CLICKHOUSE_GRAFANA_PASSWORD" and not password.text
    profile = users.find(f"profiles/{u.findtext('profile')}")
    assert profile is not None and profile.findtext("readonly") == "1"
    assert [d.text for d in u.findall("allow_databases/database")] == ["tocsin"]


def test_the_dashboard_is_made_from_the_named_queries() -> None:
    """Every panel reads the provisioned data source; every table's SQL is a named query with the
    time picker's macros (the time series are run on chdb: tests/integration/test_grafana_queries.py);
    the file is what ``python -m tocsin.infra.grafana`` writes, so it cannot drift from the queries."""
    import json

    from tocsin.infra import grafana
    from tocsin.infra.clickhouse.queries import query_names

    board = json.loads(DASHBOARD_FILE.read_text())
    assert DASHBOARD_FILE.read_text() == grafana.render()
    series = {sql for _, sql, _ in grafana.SERIES}
    named = {grafana.panel_sql(n): n for n in query_names() if n not in ("alerts_filtered", "attempts_of_alert")}
    covered = set()
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "tocsin-clickhouse"
        (target,) = panel["targets"]
        assert target["datasource"]["uid"] == "tocsin-clickhouse" and target["editorType"] == "sql"
        sql = target["rawSql"]
        assert sql in named or sql in series, panel["title"]
        assert "{" not in sql.replace("{}", ""), "an unfilled query parameter"
        covered.add(named.get(sql, "series"))
    # volumes by severity and type, noise, delivery success and latency per channel, failing destinations
    assert covered >= {"totals_24h_by_severity", "totals_24h_by_type", "noisiest_fingerprints",
                       "delivery_success_rate", "latency_by_channel", "failing_destinations", "series"}
