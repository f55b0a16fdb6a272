"""Baseline for the pipeline benchmark: a Faust agent that only consumes and produces."""

from __future__ import annotations

import os
from typing import Any

import faust


def main() -> None:
    bootstrap = os.environ["TOCSIN_KAFKA_BOOTSTRAP"]
    datadir = os.path.join(os.environ.get("TOCSIN_DATA_DIR", ".tocsin"), "faust")
    os.makedirs(datadir, exist_ok=True)
    prefix = os.environ["TOCSIN_TOPIC_PREFIX"]
    app = faust.App(f"{prefix}-passthrough", broker=f"kafka://{bootstrap}", topic_partitions=4,
                    topic_replication_factor=1, broker_session_timeout=6, broker_heartbeat_interval=1,
                    broker_rebalance_timeout=6, consumer_auto_offset_reset="earliest", web_enabled=False,
                    autodiscover=False, datadir=datadir)
    src = app.topic(f"{prefix}.alerts", key_serializer="raw", value_serializer="raw")
    out = app.topic(f"{prefix}.passthrough", key_serializer="raw", value_serializer="raw")

    @app.agent(src)
    async def copy(stream: Any) -> None:
        async for event in stream.events():
            await out.send(key=event.key, value=event.value)

    from faust.worker import Worker

    Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
