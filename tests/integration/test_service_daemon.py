"""What the systemd unit relies on, with real daemons (systemd itself does not run here).

The daemon announces readiness on $NOTIFY_SOCKET (a real datagram socket, as systemd's) only
once its API answers, and STOPPING=1 on SIGTERM; and a daemon SIGKILLed (what
Restart=on-failure recovers from) starts again cleanly from its home: same identity, same
memory, no stale lock or runtime file in the way.
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from tests.integration.harness import Daemon, cli, cli_json, mesh

pytestmark = pytest.mark.integration


def _until(server: socket.socket, prefix: str, timeout: float = 30.0) -> str:
    """The first notification starting with ``prefix`` (others are skipped)."""
    server.settimeout(timeout)
    while not (message := server.recv(4096).decode()).startswith(prefix):
        pass
    return message


def test_ready_notification_and_restart_after_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server, mesh(tmp_path) as nodes:
        server.bind(str(path))
        node = Daemon(tmp_path, "node", "svc-test")
        nodes.append(node)
        node.start(env={"NOTIFY_SOCKET": str(path)})
        ready = _until(server, "READY=1")
        assert ready.startswith("READY=1\n") and "STATUS=serving http://127.0.0.1:" in ready
        assert cli(node.home, "status").returncode == 0  # ready means the API answers

        added = cli_json(node.home, "memory", "add", "journald keeps the node's logs")
        assert node.proc is not None
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(10)

        node.start(env={"NOTIFY_SOCKET": str(path)})
        assert _until(server, "READY=1")
        status = cli_json(node.home, "status")
        assert status["peer_id"] == node.peer_id
        hits = cli_json(node.home, "memory", "search", "journald logs")
        assert added["id"] in [h["id"] for h in hits]

        assert node.stop(signal.SIGTERM) == 0
        assert _until(server, "STOPPING=1", timeout=5) == "STOPPING=1"
