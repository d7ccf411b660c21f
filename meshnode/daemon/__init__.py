"""The node daemon: one trio program owning the host, membership, memory and the local API.

The services it wires over its host are :class:`~meshnode.daemon.services.NodeServices`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager, suppress
from pathlib import Path

import trio

from bootstrap import network_psk
from memory.errors import MemoryStoreError
from memory.store import MemoryStore
from meshnode import __version__
from meshnode.agents.code import Agent, Passage, Reply
from meshnode.agents.llm import LLMClient
from meshnode.api.a2a_http import add_a2a_routes
from meshnode.api.app import ApiApp, serve_api
from meshnode.api.dashboard import Dashboard, add_dashboard_routes
from meshnode.api.metrics import NodeCollector, NodeMetrics, add_metrics_route
from meshnode.api.routes import add_agent_routes, add_memory_routes, add_node_routes
from meshnode.config import NodeConfig, load_config
from meshnode.daemon.services import NodeServices, api_hosts, make_embedder
from meshnode.errors import ConfigError, MeshnodeError, reported
from meshnode.node.faults import Faults
from meshnode.node.home import clear_runtime, load_private_key, load_token, write_runtime
from meshnode.node.host import MeshHost
from meshnode.node.lan import LanDiscovery
from meshnode.node.nat import NatService
from meshnode.node.sdnotify import notify
from meshnode.node.startup import StartupClock
from protocols.peerid import Signer

__all__ = ["Node", "NodeServices", "RunningNode", "make_embedder", "run_daemon", "run_node"]

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


class Node:
    def __init__(self, config: NodeConfig, *, agents: Sequence[Agent] = ()) -> None:
        self.config = config
        self.agents = tuple(agents)
        #: The node's services, once it runs.
        self.services: NodeServices | None = None
        self._key = load_private_key(config.home)
        self.signer = Signer(self._key)
        self._token = load_token(config.home)
        self._started = time.monotonic()
        self.api_url = ""
        #: The faults contained in this node's services, by where (shown by /v1/status).
        self.faults = Faults()
        #: Where this node's start-up went (logged once serving and once it met a peer).
        self.startup = StartupClock()

    async def run(
        self, shutdown: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        config = self.config
        clock = self.startup
        psk = network_psk(config.network_id, config.network_secret)
        embedder = await trio.to_thread.run_sync(make_embedder, config.memory)
        clock.mark("embedder")
        store = MemoryStore(
            config.memory_uri, tenant=config.tenant, embedder=embedder,
            token=config.memory.token or None,
        )
        llm = LLMClient(config.llm) if config.llm.configured else None
        faults = self.faults
        async with AsyncExitStack() as stack:
            # The node serves peers and meshes while Milvus Lite starts; memory calls wait.
            await stack.enter_async_context(store.opening())
            host = await stack.enter_async_context(
                MeshHost(self._key, listen=list(config.listen), gossip=config.gossip, psk=psk,
                         faults=faults))
            clock.mark("host started")
            lan = LanDiscovery(peer_id=self.signer.peer_id, network_id=config.network_id,
                               secret=config.network_secret,
                               addrs=host.listen_addrs) if config.mdns else None
            services = NodeServices.build(config, host, self.signer, store, embedder, llm,
                                          faults=faults,
                                          candidates=lan.candidates if lan else dict,
                                          agents=self.agents)
            self.services = services
            services.membership.handshake_listeners.append(self._met_peer)
            # NAT traversal drives py-libp2p's relay, DCUtR and AutoNAT: the real host only.
            nat = NatService(config, host, services.membership)
            # A2A sessions opened over a relay move to a direct connection once there is one.
            services.client.connection_kind = nat.connection_kind
            app = ApiApp(self._token, allowed_hosts=api_hosts(config))
            add_node_routes(app, config, services.membership,
                            lambda: time.monotonic() - self._started, lambda: self.api_url, faults,
                            limits=services.limits, tasks=services.tasks.store,
                            reach=lambda: {"lan": lan.snapshot() if lan else None,
                                           **nat.snapshot()},
                            connections=nat.connection_kinds, memory=lambda: store.state)
            add_memory_routes(app, services.knowledge)
            add_agent_routes(app, services.mesh, services.asker, services.trust)
            add_a2a_routes(app, services.mesh.handler, require_token=not config.public_a2a)
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
                nursery.start_soon(self._memory_opened, store)
                await nursery.start(services.run)
                clock.mark("services")
                if lan is not None:
                    await nursery.start(lan.run)
                await nursery.start(nat.run)
                self.api_url = await nursery.start(serve_api, app, config.api_listen, shutdown)
                clock.mark("serving")
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
                        "startup": clock.report(),
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

    async def _memory_opened(self, store: MemoryStore) -> None:
        with suppress(MemoryStoreError):  # a failed opening ends the node with its error
            await store.wait_open()
            self.startup.mark("memory open")
            log.info("memory open", extra={"startup": self.startup.report()})

    def _met_peer(self, peer_id: str) -> None:
        if "met a peer" not in self.startup.marks:
            self.startup.mark("met a peer")
            log.info("first peer met", extra={"peer": peer_id, "startup": self.startup.report()})


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


class RunningNode:
    """A node running in this program (:func:`run_node`): ask the mesh from code."""

    def __init__(self, node: Node, services: NodeServices) -> None:
        self._node = node
        self._services = services
        #: This node's peer ID.
        self.peer_id = node.signer.peer_id
        #: The local HTTP API (what the CLI talks to), e.g. ``http://127.0.0.1:7700``.
        self.api_url = node.api_url

    def listen_addrs(self) -> list[str]:
        """Where other nodes reach this one (use one as their bootstrap address)."""
        return self._services.membership.host.listen_addrs()

    def agents(self) -> list[tuple[str, str]]:
        """(agent name, peer ID) of every agent this node knows, its own included."""
        return [(card.name, peer) for peer, card in self._services.asker.known_agents()]

    async def ask(self, question: str, *, agent: str | None = None,
                  timeout: float = 60.0) -> Reply:
        """Ask the mesh, as ``meshnode ask`` does; :class:`meshnode.AskError` when no
        acceptable answer came within ``timeout`` seconds. ``Reply.data`` holds the whole
        result (timings, ``explain``)."""
        result = await self._services.asker.ask(question, agent=agent, timeout=timeout)
        answer = result["answer"]
        citations = tuple(
            Passage(c["id"], c.get("snippet", ""), c["collection"], c["author"],
                    float(c.get("score", 0.0)))
            for c in answer.get("citations", []) if isinstance(c, dict))
        return Reply(str(answer.get("text", "")), citations, result, result["agent"],
                     result["peer"])


@asynccontextmanager
async def run_node(config: NodeConfig | str | os.PathLike[str], *,
                   agents: Sequence[Agent] = ()) -> AsyncIterator[RunningNode]:
    """Run a node inside this trio program, hosting ``agents`` (agents in code) besides
    those of its config, until the ``async with`` block ends.

    ``config`` is a node home made by ``meshnode init`` (its config.toml is read) or a
    NodeConfig. The node is the same as ``meshnode start``'s: it joins the mesh, serves its
    local API (so the CLI works against it) and holds the home's lock meanwhile.
    """
    if not isinstance(config, NodeConfig):
        config = load_config(Path(config))
    with _home_lock(config.home):
        node = Node(config, agents=agents)
        shutdown = trio.Event()
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run, shutdown)
            assert node.services is not None
            try:
                yield RunningNode(node, node.services)
            finally:
                shutdown.set()
