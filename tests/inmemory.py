"""Nodes on an in-memory mesh: meshnode's real services in one trio program, no sockets.

Shared by the in-process service tests of every folder. :func:`start_peer` runs a node's
membership (and trust service) only; :func:`start_nodes` runs whole nodes, wired by the
daemon's own :class:`~meshnode.daemon.NodeServices`, each with a Milvus Lite store in the
test's temporary folder. Everything runs in the test's nursery and stops with it.

Waiting is by condition (:func:`eventually`), never by sleeping a guessed time. Tests that
use only gossip and timers can run under trio's MockClock (the ``autojump_clock``
fixture); tests with Milvus Lite run on the real clock, because a clock that jumps while a
thread works would fire every deadline in sight.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import trio

from memory.embedders import HashingEmbedder
from memory.store import MemoryStore
from meshnode.agents.specs import AgentSpec
from meshnode.config import NodeConfig, RoutingSettings
from meshnode.daemon import NodeServices
from meshnode.node.inmemory import InMemoryHost, InMemoryMesh
from meshnode.node.membership import Membership
from meshnode.trust.service import TrustService
from protocols.peerid import Signer

NET = "dev-support"
VERSION = "test"


@cache
def identity(i: int) -> Signer:
    """The i-th of a fixed pool of Ed25519 identities."""
    return Signer.from_seed((1000 + i).to_bytes(32, "big"))


async def eventually(check: Callable[[], object], what: str, *, timeout: float = 30.0,
                     poll: float = 0.01) -> None:
    """Wait until ``check()`` (or what it returns, if awaitable) is true: a condition with a
    deadline (virtual time under the MockClock), failing with ``what``."""
    with trio.move_on_after(timeout):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            # Polled: the services have no event for every state a test may wait for (and
            # time-driven changes such as expiry have none at all).
            await trio.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def node_config(root: Path, i: int, *, network_id: str = NET, bootstrap: Sequence[str] = (),
                agents: Sequence[AgentSpec] = (), **settings: Any) -> NodeConfig:
    home = root / f"node{i}"
    home.mkdir(parents=True, exist_ok=True)
    settings.setdefault("routing", RoutingSettings(explore=0.0))  # no random exploration
    return NodeConfig(home=home, network_id=network_id, listen=(), bootstrap=tuple(bootstrap),
                      agents=tuple(agents), **settings)


@dataclass
class Peer:
    """A node running membership (and optionally trust) only."""

    signer: Signer
    host: InMemoryHost
    config: NodeConfig
    membership: Membership
    trust: TrustService | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    def stop(self) -> None:
        """Stop the node's services (they say goodbye) and its host."""
        self.scope.cancel()

    @property
    def id(self) -> str:
        return self.signer.peer_id

    @property
    def addr(self) -> str:
        return self.host.listen_addrs()[0]


async def start_peer(
    nursery: trio.Nursery, mesh: InMemoryMesh, root: Path, i: int, *,
    bootstrap: Sequence[Peer] = (), with_trust: bool = False,
    agent_cards: Callable[[], list[dict[str, Any]]] = list, **settings: Any,
) -> Peer:
    signer = identity(i)
    host = mesh.host(signer.peer_id)
    config = node_config(root, i, bootstrap=[p.addr for p in bootstrap], **settings)
    membership = Membership(config, host, signer, version=VERSION, agent_cards=agent_cards,
                            clock=mesh.clock)
    peer = Peer(signer, host, config, membership)
    if with_trust:
        peer.trust = TrustService(config, host, signer, clock=mesh.clock)
        membership.bad_message_listeners.append(peer.trust.bad_message)
        membership.handshake_listeners.append(peer.trust.peer_joined)  # as the daemon

    async def serve(*, task_status: trio.TaskStatus[None]) -> None:
        with peer.scope:
            async with host, trio.open_nursery() as services:
                await services.start(membership.run)
                if peer.trust is not None:
                    await services.start(peer.trust.run)
                task_status.started()

    await nursery.start(serve)
    return peer


@dataclass
class Node:
    """A whole node: every service, as the daemon wires them."""

    signer: Signer
    host: InMemoryHost
    config: NodeConfig
    services: NodeServices = field(init=False)
    store: MemoryStore = field(init=False)

    @property
    def id(self) -> str:
        return self.signer.peer_id


async def start_nodes(
    nursery: trio.Nursery, mesh: InMemoryMesh, root: Path, agents: Sequence[Sequence[AgentSpec]],
    **settings: Any,
) -> list[Node]:
    """One node per entry of ``agents`` (the agents it hosts), started concurrently (opening
    Milvus Lite is the slow part) and not yet connected: see :func:`connect`."""
    nodes = []
    for i, specs in enumerate(agents):
        signer = identity(i)
        config = node_config(root, i, agents=specs, **settings)
        nodes.append(Node(signer, mesh.host(signer.peer_id), config))

    async def serve(node: Node, *, task_status: trio.TaskStatus[None]) -> None:
        embedder = HashingEmbedder()
        node.store = MemoryStore(node.config.memory_uri, tenant=node.config.tenant,
                                 embedder=embedder)
        async with node.store, node.host:
            node.services = NodeServices.build(node.config, node.host, node.signer, node.store,
                                               embedder, None, clock=mesh.clock)
            async with trio.open_nursery() as services:
                await services.start(node.services.run)
                task_status.started()

    async with trio.open_nursery() as starters:
        for node in nodes:
            starters.start_soon(nursery.start, serve, node)
    return nodes


async def connect(a: Node | Peer, b: Node | Peer) -> None:
    """Connect two nodes and wait until each has verified the other's hello."""
    await a.host.connect(b.id, b.host.listen_addrs(), timeout=5)
    membership = (a.services.membership if isinstance(a, Node) else a.membership,
                  b.services.membership if isinstance(b, Node) else b.membership)
    await eventually(lambda: b.id in membership[0].table and a.id in membership[1].table,
                     f"the hello between {a.id[-6:]} and {b.id[-6:]}")


def no_faults(mesh: InMemoryMesh) -> None:
    """No stream handler or gossip validator raised on any host of ``mesh``."""
    faults = {p[-6:]: (h.handler_errors, h.validator_errors) for p, h in mesh.hosts.items()
              if h.handler_errors or h.validator_errors}
    assert not faults, f"(handler, validator) errors per host: {faults}"
