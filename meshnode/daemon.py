"""The node daemon: one trio program owning the host, membership and the local API."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio
from trio_typing import TaskStatus

from bootstrap import network_psk
from meshnode import __version__
from meshnode.api import ApiApp, HttpError, Request, serve_api
from meshnode.config import NodeConfig
from meshnode.errors import ConfigError
from meshnode.home import clear_runtime, load_private_key, load_token, write_runtime
from meshnode.host import MeshHost
from meshnode.membership import Membership
from protocols.peerid import Signer

log = logging.getLogger("meshnode.daemon")


@contextmanager
def _home_lock(home: Path) -> Iterator[None]:
    """One daemon per home: the identity and the memory files are not shareable."""
    fd = os.open(home / "daemon.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"a meshnode daemon is already running for {home}") from None
        yield
    finally:
        os.close(fd)


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self._key = load_private_key(config.home)
        self.signer = Signer(self._key)
        self._token = load_token(config.home)
        self._started = time.monotonic()
        self.api_url = ""

    async def run(
        self, shutdown: trio.Event, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        config = self.config
        psk = network_psk(config.network_id, config.network_secret)
        async with MeshHost(
            self._key, listen=list(config.listen), gossip=config.gossip, psk=psk
        ) as host:
            membership = Membership(config, host, self.signer, version=__version__)
            app = self._api(host, membership)
            async with trio.open_nursery() as nursery:
                await nursery.start(membership.run)
                self.api_url = await nursery.start(serve_api, app, config.api_listen, shutdown)
                write_runtime(
                    config.home,
                    {"pid": os.getpid(), "api": self.api_url, "peer_id": self.signer.peer_id},
                )
                log.info(
                    "node started",
                    extra={
                        "peer_id": self.signer.peer_id,
                        "network_id": config.network_id,
                        "private": psk is not None,
                        "listen_addrs": host.listen_addrs(),
                        "api": self.api_url,
                    },
                )
                task_status.started()
                try:
                    await shutdown.wait()
                finally:
                    clear_runtime(config.home)
                    nursery.cancel_scope.cancel()
        log.info("node stopped", extra={"peer_id": self.signer.peer_id})

    def _api(self, host: MeshHost, membership: Membership) -> ApiApp:
        app = ApiApp(self._token)

        async def status(_: Request) -> dict[str, Any]:
            return {
                "peer_id": self.signer.peer_id,
                "network_id": self.config.network_id,
                "private": bool(self.config.network_secret),
                "version": __version__,
                "listen_addrs": host.listen_addrs(),
                "connected_peers": len(membership.verified_connected()),
                "known_peers": len(membership.table),
                "uptime_s": round(time.monotonic() - self._started, 1),
                "bootstrap": list(self.config.bootstrap),
                "api": self.api_url,
            }

        async def peers(_: Request) -> list[dict[str, Any]]:
            return membership.peers_json()

        async def gossip(request: Request) -> dict[str, Any]:
            try:
                since = float(request.arg("since", "0") or 0)
            except ValueError:
                raise HttpError(400, "since must be a unix time in seconds") from None
            return membership.gossip_json(since)

        app.route("GET", "/v1/status", status)
        app.route("GET", "/v1/gossip", gossip)
        app.route("GET", "/v1/peers", peers)
        return app


async def _watch_signals(shutdown: trio.Event, cancel: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if shutdown.is_set():
                log.warning("second signal: stopping at once")
                cancel.cancel()
                return
            log.info("shutting down", extra={"signal": signal.Signals(signum).name})
            shutdown.set()


async def _main(config: NodeConfig) -> None:
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals, shutdown, nursery.cancel_scope)
        await Node(config).run(shutdown)
        nursery.cancel_scope.cancel()


def run_daemon(config: NodeConfig) -> None:
    """Run a node in the foreground until SIGINT or SIGTERM."""
    with _home_lock(config.home):
        trio.run(_main, config)
