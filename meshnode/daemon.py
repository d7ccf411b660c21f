"""The node daemon: one trio program owning the host, membership, memory and the local API."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from bootstrap import network_psk
from memory.embedders import Embedder, embedder_from_config
from memory.errors import MemoryStoreError
from memory.store import MemoryStore
from meshnode import __version__
from meshnode.a2a.lifecycle import TaskStore
from meshnode.a2a.tasks import TaskService
from meshnode.agents.answering import Answerer
from meshnode.agents.llm import LLMClient
from meshnode.api.a2a_http import add_a2a_routes
from meshnode.api.app import ApiApp, serve_api
from meshnode.api.dashboard import Dashboard, add_dashboard_routes
from meshnode.api.mesh_agent import MeshA2A
from meshnode.api.metrics import NodeCollector, NodeMetrics, add_metrics_route
from meshnode.api.routes import add_agent_routes, add_memory_routes, add_node_routes
from meshnode.ask.asker import Asker
from meshnode.ask.relevance import SkillIndex
from meshnode.config import MemorySettings, NodeConfig
from meshnode.errors import ConfigError, MeshnodeError, reported
from meshnode.node.faults import Faults
from meshnode.node.home import clear_runtime, load_private_key, load_token, write_runtime
from meshnode.node.host import MeshHost
from meshnode.node.knowledge import KnowledgeService
from meshnode.node.membership import Membership
from meshnode.node.sdnotify import notify
from meshnode.node.transport import Host
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


@dataclass
class NodeServices:
    """The services of one node, wired to each other, over any :class:`Host`.

    The daemon builds them over a MeshHost; in-process tests build them the same way over an
    InMemoryHost. ``clock`` is the wall clock of signatures, ages and expiry (tests drive it
    from trio's clock).
    """

    membership: Membership
    knowledge: KnowledgeService
    tasks: TaskService
    trust: TrustService
    asker: Asker
    mesh: MeshA2A

    @classmethod
    def build(
        cls,
        config: NodeConfig,
        host: Host,
        signer: Signer,
        store: MemoryStore,
        embedder: Embedder,
        llm: LLMClient | None,
        *,
        clock: Callable[[], float] = time.time,
        faults: Faults | None = None,
    ) -> NodeServices:
        faults = faults if faults is not None else Faults()
        task_store = TaskStore(faults=faults)
        tasks: TaskService | None = None
        membership = Membership(
            config, host, signer, version=__version__,
            agent_cards=lambda: [card_to_wire(c) for c in tasks.cards()] if tasks else [],
            load=lambda: float(task_store.running()),
            clock=clock, faults=faults,
        )
        knowledge = KnowledgeService(config, host, membership, signer, store, faults=faults)
        tasks = TaskService(host, config.agents, Answerer(store, llm), knowledge,
                            version=__version__, store=task_store)
        trust = TrustService(config, host, signer, clock=clock)
        membership.bad_message_listeners.append(trust.bad_message)
        asker = Asker(host, membership, tasks, SkillIndex(embedder, trio.CapacityLimiter(2)),
                      trust.graph, settings=config.routing, faults=faults, knowledge=knowledge)
        tasks.forwarder = asker.answer_forwarded
        # Questions from A2A clients that needed no token are nobody's to accept: not learnt.
        mesh = MeshA2A(asker, tasks, network_id=config.network_id, version=__version__,
                       learn_from_a2a=not config.public_a2a)
        return cls(membership, knowledge, tasks, trust, asker, mesh)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the mesh until cancelled."""
        self.tasks.serve()
        async with trio.open_nursery() as nursery:
            await nursery.start(self.membership.run)
            await nursery.start(self.knowledge.run)
            await nursery.start(self.trust.run)
            await nursery.start(self.asker.run)
            await nursery.start(self.mesh.run)
            task_status.started()


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self._key = load_private_key(config.home)
        self.signer = Signer(self._key)
        self._token = load_token(config.home)
        self._started = time.monotonic()
        self.api_url = ""
        #: The faults contained in this node's services, by where (shown by /v1/status).
        self.faults = Faults()

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
        faults = self.faults
        async with (
            store,
            MeshHost(self._key, listen=list(config.listen), gossip=config.gossip, psk=psk,
                     faults=faults) as host,
        ):
            services = NodeServices.build(config, host, self.signer, store, embedder, llm,
                                          faults=faults)
            app = ApiApp(self._token)
            add_node_routes(app, config, services.membership,
                            lambda: time.monotonic() - self._started, lambda: self.api_url, faults)
            add_memory_routes(app, services.knowledge)
            add_agent_routes(app, services.mesh, services.asker, services.trust)
            add_a2a_routes(app, services.mesh, require_token=not config.public_a2a)
            collector = NodeCollector(
                peer_id=self.signer.peer_id, network_id=config.network_id, version=__version__,
                membership=services.membership, tasks=services.tasks, trust=services.trust,
                knowledge=services.knowledge, connections=host.connection_counts,
                published=host.published, faults=faults,
            )
            add_metrics_route(app, NodeMetrics(collector, services.asker, services.knowledge),
                              public=config.public_metrics)
            add_dashboard_routes(app, Dashboard(
                self._token, membership=services.membership, asker=services.asker,
                trust=services.trust, tasks=services.tasks, memory_stats=services.knowledge.stats,
            ))
            async with trio.open_nursery() as nursery:
                await nursery.start(services.run)
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
                        "agents": sorted(services.tasks.specs),
                        "llm": config.llm.describe(),
                    },
                )
                task_status.started()
                notify(f"READY=1\nSTATUS=serving {self.api_url}\nMAINPID={os.getpid()}")
                try:
                    await shutdown.wait()
                finally:
                    notify("STOPPING=1")
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


def run_daemon(config: NodeConfig) -> None:
    """Run a node in the foreground until SIGINT or SIGTERM.

    Failures the operator can fix (a bad memory URI, a port in use) become one MeshnodeError
    instead of a traceback from deep inside a nursery.
    """
    with _home_lock(config.home):
        try:
            trio.run(_main, config)
        except BaseException as error:
            leaf = reported(error)
            if leaf is None:
                raise
            if isinstance(leaf, MeshnodeError):
                raise leaf from None
            raise ConfigError(f"cannot start: {leaf}") from None
