"""The pipeline against real Kafka (KRaft) and ClickHouse server containers (testcontainers).

Runs where a Docker engine is reachable; skipped with the reason where it is not (these
machines have the docker client but no engine). The same suite runs on the embedded stack
in test_pipeline.py and test_recording.py.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from .conftest import base_env
from .harness import HttpReceiver, Stack, produce, read_topic
from .test_clickhouse_queries import _docker_reason
from .test_pipeline import alert_bytes, bucket_time

pytestmark = [pytest.mark.integration, pytest.mark.docker]


@pytest.fixture(scope="module")
def containers():  # type: ignore[no-untyped-def]
    reason = _docker_reason()
    if reason:
        pytest.skip(reason)
    from testcontainers.community.clickhouse import ClickHouseContainer
    from testcontainers.community.kafka import KafkaContainer

    with KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as kafka, \
            ClickHouseContainer("clickhouse/clickhouse-server:24.8", username="tocsin", password="s3cret") as ch:
        host, port = ch.get_container_host_ip(), ch.get_exposed_port(8123)
        yield kafka.get_bootstrap_server(), f"http://tocsin:s3cret@{host}:{port}/tocsin"


async def test_pipeline_on_real_kafka_and_clickhouse(containers, tmp_path: Path, webhook: HttpReceiver) -> None:  # type: ignore[no-untyped-def]
    bootstrap, ch_url = containers
    prefix = f"c{int(time.time())}"
    st = Stack(bootstrap, prefix, tmp_path, base_env(bootstrap, prefix, tmp_path))
    try:
        await st.start_worker(TOCSIN_CLICKHOUSE_URL=ch_url, TOCSIN_RECORD_ENABLED="true",
                              TOCSIN_RECORD_BATCH_S="0.2", TOCSIN_WEBHOOK_DEFAULT_URL=webhook.url)
        items = [alert_bytes(type="db_write_fail", severity=2, summary=f"c{i}", fingerprint="c:1",
                             event_timestamp=bucket_time(i)) for i in range(4)]
        await produce(bootstrap, st.topic("alerts"), items)
        decisions = await read_topic(bootstrap, st.topic("decisions"), min_count=4, timeout=60)
        assert [d["value"]["outcome"] for d in decisions].count("notify") == 1
        await webhook.wait_for(lambda r: len(r) == 1)
        from tocsin.infra.clickhouse.store import open_store

        with open_store(ch_url) as store:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                _, rows = store.query("SELECT count() FROM tocsin.alerts FINAL")
                if rows[0][0] == 4:
                    break
                await asyncio.sleep(0.5)
            assert rows[0][0] == 4
    finally:
        for w in st.workers:
            w.stop()


def test_analyst_sql_on_a_server_as_on_chdb(containers, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The same refusals and limits on a ClickHouse server as test_sql_readonly.py on chdb."""
    from tocsin.errors import ReadOnlyError, StoreError
    from tocsin.infra.clickhouse.readonly import SqlLimits
    from tocsin.infra.clickhouse.store import open_store

    from .test_sql_readonly import REFUSED

    _, ch_url = containers
    with open_store(ch_url) as store:
        store.migrate()
        for sql, reason in REFUSED:
            with pytest.raises(ReadOnlyError) as err:
                store.query_readonly(sql.format(out=tmp_path / "out.tsv"))
            assert reason in str(err.value), sql
        assert store.query_readonly("SELECT count() AS n FROM tocsin.alerts")[0] == ["n"]
        with pytest.raises(StoreError, match="code 396"):
            store.query_readonly("SELECT number FROM numbers(5000)", SqlLimits(max_result_rows=1000))
