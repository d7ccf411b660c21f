"""A throwaway standalone Milvus server for tests and benchmarks.

Runs ``milvus-server`` (PyPI package ``milvus``, Milvus 2.3) from the same environment as
this interpreter, with its data in a given folder and every port picked free. Its embedded
etcd is bound to loopback through an etcd config file, since it ignores ``--etcd-port``
and would otherwise take 2379/2380 on all interfaces. The Milvus 2.3 gRPC services (and
the metrics port, 9091 or the next free one) still listen on every interface: that build
has no setting for their bind address, only for the address they advertise, which is set
to 127.0.0.1. Use it on a trusted machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pymilvus import MilvusClient

from memory.errors import StoreUnavailable

START_DEADLINE_S = 180.0
STOP_DEADLINE_S = 5.0
_ROLES = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")
_PORT_OPTIONS = (
    "etcd-port", "root-coord-port", "proxy-port", "proxy-internal-port", "query-coord-port",
    "query-node-port", "index-coord-port", "index-node-port", "data-coord-port", "data-node-port",
)


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports that were free on loopback a moment ago."""
    sockets = []
    try:
        for _ in range(n):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class MilvusServer:
    process: subprocess.Popen[bytes]
    port: int
    base: Path

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        logs = [self.base / "milvus-server.log", *sorted(self.base.glob("data/logs/milvus-*.log"))]
        tails = [p.read_text(errors="replace").splitlines()[-lines:] for p in logs if p.exists()]
        return "\n".join(line for tail in tails for line in tail)

    def wait_ready(self, deadline_s: float = START_DEADLINE_S) -> None:
        deadline = time.monotonic() + deadline_s
        error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StoreUnavailable(
                    f"milvus-server exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                client = MilvusClient(uri=self.uri, timeout=5, dedicated=True)
                client.list_collections(timeout=5)
                client.close()
                return
            except Exception as exc:  # not up yet: any failure means "try again"
                error = exc
                time.sleep(1.0)
        raise StoreUnavailable(
            f"milvus-server not ready after {deadline_s} s ({error}):\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Stop the wrapper and the milvus process it started (they share a process group
        of their own): politely, then by force."""
        for sig, grace_s in ((signal.SIGTERM, STOP_DEADLINE_S), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            if self._group_gone(grace_s):
                break
        self.process.wait(5.0)

    def _group_gone(self, wait_s: float) -> bool:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            self.process.poll()  # reap the wrapper, or its zombie keeps the group alive
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.2)
        return False


def start_milvus_server(base: Path, deadline_s: float = START_DEADLINE_S) -> MilvusServer:
    """Start ``milvus-server`` with its files under ``base`` and wait until it answers."""
    executable = Path(sys.executable).with_name("milvus-server")
    if not executable.exists():
        raise StoreUnavailable(f"{executable} is missing: pip install 'meshnode[test]'")
    base.mkdir(parents=True, exist_ok=True)
    etcd_peer, *ports = free_ports(1 + len(_PORT_OPTIONS))
    etcd_client, proxy = ports[0], ports[2]
    etcd_config = base / "embed-etcd.yaml"
    etcd_config.write_text(
        f"name: meshnode-test\n"
        f"data-dir: {base / 'etcd'}\n"
        f"listen-client-urls: http://127.0.0.1:{etcd_client}\n"
        f"advertise-client-urls: http://127.0.0.1:{etcd_client}\n"
        f"listen-peer-urls: http://127.0.0.1:{etcd_peer}\n"
        f"initial-advertise-peer-urls: http://127.0.0.1:{etcd_peer}\n"
        f"initial-cluster: meshnode-test=http://127.0.0.1:{etcd_peer}\n"
    )
    args = [str(executable), "--data", str(base / "data")]
    for option, port in zip(_PORT_OPTIONS, ports, strict=True):
        args += [f"--{option}", str(port)]
    for role in _ROLES:
        args += ["--extra-config", f"{role}.ip=127.0.0.1"]
    with (base / "milvus-server.log").open("wb") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "ETCD_CONFIG_PATH": str(etcd_config)},
        )
    server = MilvusServer(process, proxy, base)
    try:
        server.wait_ready(deadline_s)
    except BaseException:
        server.stop()
        raise
    return server
