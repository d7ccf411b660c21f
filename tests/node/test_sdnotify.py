"""sd_notify against a real datagram socket, as systemd would listen on it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from meshnode.node.sdnotify import notify


def test_ready_reaches_a_path_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        assert notify("READY=1\nSTATUS=serving", {"NOTIFY_SOCKET": str(path)})
        server.settimeout(5)
        assert server.recv(4096) == b"READY=1\nSTATUS=serving"


def test_abstract_namespace_socket() -> None:
    name = f"meshnode-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        assert notify("STOPPING=1", {"NOTIFY_SOCKET": "@" + name})
        server.settimeout(5)
        assert server.recv(4096) == b"STOPPING=1"


def test_nothing_without_systemd(tmp_path: Path) -> None:
    assert not notify("READY=1", {})
    assert not notify("READY=1", {"NOTIFY_SOCKET": "not-a-path"})
    assert not notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
