"""Real `meshnode start` processes on loopback, each with its own home, driven by the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from meshnode.cli.client import DaemonClient

T = TypeVar("T")

# Tests want a mesh that notices things in seconds, not the defaults' tens of seconds.
FAST: dict[str, dict[str, Any]] = {
    "gossip": {"presence_interval_s": 1.0, "peer_ttl_s": 6.0, "ping_interval_s": 2.0,
               "heartbeat_s": 0.5},
    "memory": {"sync_interval_s": 3.0},
    # Tests on one machine must not find each other (or other runs) on the LAN.
    "network": {"mdns": False},
}


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)  # strings, numbers and lists of strings read the same in TOML


def cli(home: Path, *args: str, timeout: float = 30.0, prefix: tuple[str, ...] = ()
        ) -> subprocess.CompletedProcess[str]:
    """Run the CLI (``prefix``: e.g. ``ip netns exec NS`` for a daemon in a namespace)."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "meshnode.cli", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "MESHNODE_HOME": ""},
    )


def cli_json(home: Path, *args: str, prefix: tuple[str, ...] = ()) -> Any:
    result = cli(home, *args, "--json", prefix=prefix)
    if result.returncode != 0:
        raise AssertionError(f"meshnode {' '.join(args)} failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def wait_for(what: str, check: Callable[[], T | None], timeout: float, every: float = 0.5) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


class Daemon:
    def __init__(
        self,
        root: Path,
        name: str,
        network_id: str,
        settings: dict[str, dict[str, Any]] | None = None,
        *,
        fast: bool = True,
        prefix: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.prefix = prefix  # runs the daemon and its CLI calls, e.g. in a network namespace
        self.home = root / name
        self.network_id = network_id
        result = cli(self.home, "init", "--network-id", network_id)
        assert result.returncode == 0, result.stderr
        self.peer_id = result.stdout.split("peer ID: ")[1].strip()
        self.configure({**(FAST if fast else {}), **(settings or {})})
        self.proc: subprocess.Popen[bytes] | None = None
        self.addr = ""

    def add_agent(self, toml: str) -> None:
        """Append [[agents]] tables (TOML text) to the node's config."""
        with (self.home / "config.toml").open("a") as f:
            f.write("\n" + toml)

    def configure(self, settings: dict[str, dict[str, Any]]) -> None:
        """Override settings of config.toml, e.g. {"memory": {"sync_interval_s": 2.0}}."""
        path = self.home / "config.toml"
        data = tomllib.loads(path.read_text())
        agents = data.pop("agents", [])
        for section, values in settings.items():
            data.setdefault(section, {}).update(values)
        path.write_text("".join(
            f"[{section}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in table.items()) + "\n"
            for section, table in data.items()
        ))
        if agents:
            raise AssertionError("configure() before add_agent(): agents would be lost")

    def start(
        self,
        *bootstrap: str,
        env: dict[str, str] | None = None,
        log_level: str = "debug",
        timeout: float = 60.0,
        listen: str = "/ip4/127.0.0.1/tcp/0",
    ) -> Daemon:
        args = [*self.prefix, sys.executable, "-m", "meshnode.cli", "start",
                "--home", str(self.home), "--listen", listen, "--api", "127.0.0.1:0",
                "--log-level", log_level]
        if bootstrap:
            args += ["--bootstrap", *bootstrap]
        self.log = (self.home / "daemon.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log,
                                     env={**os.environ, **(env or {})})
        status = wait_for(f"{self.name} to start", self._status, timeout=timeout)
        self.addr = status["listen_addrs"][0]
        return self

    def _status(self) -> dict[str, Any] | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log_text()}")
        try:
            result = cli(self.home, "status", "--json", prefix=self.prefix)
        except subprocess.TimeoutExpired:  # a daemon still starting on a loaded machine
            return None
        return json.loads(result.stdout) if result.returncode == 0 else None

    def json(self, *args: str) -> Any:
        """``meshnode ARGS --json`` against this daemon."""
        return cli_json(self.home, *args, prefix=self.prefix)

    def peers(self) -> list[dict[str, Any]]:
        return self.json("peers")  # type: ignore[no-any-return]

    def peer_ids(self, *, connected: bool | None = None) -> set[str]:
        return {
            p["peer_id"]
            for p in self.peers()
            if connected is None or p["connected"] == connected
        }

    def status(self) -> dict[str, Any]:
        return cli_json(self.home, "status")  # type: ignore[no-any-return]

    def api(self, path: str) -> Any:
        """GET ``path`` of the daemon's local API (for what the CLI does not show)."""
        return DaemonClient(self.home).get(path)

    def log_text(self) -> str:
        path = self.home / "daemon.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"{self.name} did not exit within {timeout:.0f} s of {sig}"
            ) from None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@contextmanager
def mesh(root: Path) -> Iterator[list[Daemon]]:
    """Yields a list to append daemons to; every one is stopped at the end."""
    daemons: list[Daemon] = []
    try:
        yield daemons
    finally:
        for daemon in daemons:
            with suppress(AssertionError):
                daemon.stop(signal.SIGKILL)
