"""The node daemon: one trio program owning the host, membership, memory and the local API."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import trio

from bootstrap import network_psk
from memory.embedders import Embedder, embedder_from_config
from memory.errors import MemoryStoreError
from memory.store import MemoryStore
from meshnode import __version__
from meshnode.a2a.tasks import TaskService
from meshnode.agents.answering import Answerer
from meshnode.agents.llm import LLMClient
from meshnode.api.a2a_http import add_a2a_routes
from meshnode.api.app import ApiApp, serve_api
from meshnode.api.mesh_agent import MeshA2A
from meshnode.api.routes import add_agent_routes, add_memory_routes, add_node_routes
from meshnode.ask.asker import Asker
from meshnode.ask.relevance import SkillIndex
from meshnode.config import MemorySettings, NodeConfig
from meshnode.errors import ConfigError, MeshnodeError
from meshnode.node.home import clear_runtime, load_private_key, load_token, write_runtime
from meshnode.node.host import MeshHost
from meshnode.node.knowledge import KnowledgeService
from meshnode.node.lan import LanDiscovery
from meshnode.node.membership import HELLO_TIMEOUT_S, Membership
from meshnode.node.nat import NatService
from meshnode.trust.service import TrustService
from protocols.a2a import card_to_wire
from protocols.peerid import Signer

log = logging.getLogger(__name__)


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


def make_embedder(settings: MemorySettings) -> Embedder:
    options: dict[str, Any] = {}
    if settings.embedder == "openai":
        options["model"] = settings.embedder_model or "text-embedding-3-small"
        if settings.embedder_base_url:
            options["base_url"] = settings.embedder_base_url
        if settings.embedder_dim:
            options["dim"] = settings.embedder_dim
    try:
        return embedder_from_config(settings.embedder, **options)
    except MemoryStoreError as exc:
        raise ConfigError(f"memory.embedder: {exc}") from None


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self._key = load_private_key(config.home)
        self.signer = Signer(self._key)
        self._token = load_token(config.home)
        self._started = time.monotonic()
        self.api_url = ""

    async def run(
        self, shutdown: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        config = self.config
        psk = network_psk(config.network_id, config.network_secret)
        embedder = await trio.to_thread.run_sync(make_embedder, config.memory)
        store = MemoryStore(
            config.memory_uri, tenant=config.tenant, embedder=embedder,
            token=config.memory.token or None,
        )
        llm = LLMClient(config.llm) if config.llm.configured else None
        async with (
            store,
            MeshHost(self._key, listen=list(config.listen), gossip=config.gossip, psk=psk) as host,
        ):
            tasks: TaskService | None = None
            lan = LanDiscovery(peer_id=self.signer.peer_id, network_id=config.network_id,
                               secret=config.network_secret,
                               addrs=host.listen_addrs) if config.mdns else None
            membership = Membership(
                config, host, self.signer, version=__version__,
                agent_cards=lambda: [card_to_wire(c) for c in tasks.cards()] if tasks else [],
                load=lambda: float(len(tasks.running)) if tasks else 0.0,
                candidates=lan.candidates if lan else dict,
            )
            knowledge = KnowledgeService(config, host, membership, self.signer, store)
            nat = NatService(config, host, membership)
            tasks = TaskService(host, config.agents, Answerer(store, llm), knowledge,
                                version=__version__)
            trust = TrustService(config, host, self.signer)
            membership.bad_message_listeners.append(trust.bad_message)
            asker = Asker(host, membership, tasks, SkillIndex(embedder, trio.CapacityLimiter(2)),
                          trust.graph, settings=config.routing)
            tasks.forwarder = asker.answer_forwarded
            mesh = MeshA2A(asker, tasks, network_id=config.network_id, version=__version__)
            app = ApiApp(self._token)
            add_node_routes(app, config, membership, lambda: time.monotonic() - self._started,
                            lambda: self.api_url,
                            lambda: {"lan": lan.snapshot() if lan else None,
                                     **nat.snapshot()},
                            nat.connection_kinds)
            add_memory_routes(app, knowledge)
            add_agent_routes(app, mesh, asker, trust)
            add_a2a_routes(app, mesh, require_token=not config.public_a2a)
            tasks.serve(admit=partial(membership.gate.wait, timeout=HELLO_TIMEOUT_S))
            async with trio.open_nursery() as nursery:
                await nursery.start(membership.run)
                if lan is not None:
                    await nursery.start(lan.run)
                await nursery.start(nat.run)
                await nursery.start(knowledge.run)
                await nursery.start(trust.run)
                await nursery.start(mesh.run)
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
                        "memory": config.memory.uri,
                        "embedder": embedder.name,
                        "agents": sorted(tasks.specs),
                        "llm": config.llm.describe(),
                    },
                )
                task_status.started()
                try:
                    await shutdown.wait()
                finally:
                    clear_runtime(config.home)
                    nursery.cancel_scope.cancel()
        log.info("node stopped", extra={"peer_id": self.signer.peer_id})


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


def _leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


def run_daemon(config: NodeConfig) -> None:
    """Run a node in the foreground until SIGINT or SIGTERM.

    Failures the operator can fix (a bad memory URI, a port in use) become one MeshnodeError
    instead of a traceback from deep inside a nursery.
    """
    with _home_lock(config.home):
        try:
            trio.run(_main, config)
        except BaseException as error:
            for leaf in _leaves(error):
                if isinstance(leaf, MeshnodeError):
                    raise leaf from None
                if isinstance(leaf, MemoryStoreError):
                    raise ConfigError(f"memory ({config.memory.uri}): {leaf}") from None
                if isinstance(leaf, OSError):
                    raise ConfigError(f"cannot start: {leaf}") from None
            raise
