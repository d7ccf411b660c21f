"""The services of one node, wired to each other over any host: the daemon's, and the
in-memory mesh's in tests (:class:`NodeServices`); with the embedder and the agents the
config names.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from memory.embedders import Embedder, embedder_from_config
from memory.errors import MemoryStoreError
from memory.store import MemoryStore
from meshnode import __version__
from meshnode.a2a.hosted import CodeAgent, RemoteAgent, resolve_code_agent
from meshnode.a2a.lifecycle import TaskStore
from meshnode.a2a.session import A2AClient, SessionServer
from meshnode.a2a.tasks import HostedAgent, TaskService, agent_card
from meshnode.agents.answering import Answerer
from meshnode.agents.code import Agent, Handler
from meshnode.agents.llm import LLMClient
from meshnode.agents.specs import AgentSpec
from meshnode.api.mesh_agent import MeshA2A
from meshnode.ask.asker import Asker
from meshnode.ask.delegation import ConsultingAgent, Delegator
from meshnode.ask.relevance import SkillIndex
from meshnode.config import MemorySettings, NodeConfig
from meshnode.errors import ConfigError
from meshnode.node.faults import Faults
from meshnode.node.knowledge import KnowledgeService
from meshnode.node.limits import LimitedHost, PeerLimits
from meshnode.node.membership import HELLO_TIMEOUT_S, Membership
from meshnode.node.transport import Host
from meshnode.trust.service import TrustService
from protocols.a2a import card_to_wire
from protocols.peerid import Signer


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


def api_hosts(config: NodeConfig) -> tuple[str, ...]:
    """The host names the local API answers for: the configured ones, and the name it
    listens on (localhost and IP addresses always)."""
    name = config.api_listen.rpartition(":")[0].strip("[]")
    return (*config.allowed_hosts, *([name] if name else []))


def _agent_specs(config: NodeConfig, in_process: Sequence[Agent]
                 ) -> tuple[tuple[AgentSpec, ...], dict[str, Handler]]:
    """Every agent's spec, agents in code resolved (their handlers imported), and the
    handlers by agent name. ConfigError for a handler that cannot be used or a name taken
    twice."""
    specs: list[AgentSpec] = []
    handlers: dict[str, Handler] = {}
    for spec in config.agents:
        if spec.kind == "code":
            resolved, handler = resolve_code_agent(spec)
            handlers[resolved.name] = handler
            spec = resolved
        specs.append(spec)
    for agent in in_process:
        spec, handler = resolve_code_agent(agent.spec(), agent)
        specs.append(spec)
        handlers[spec.name] = handler
    names = [spec.name.casefold() for spec in specs]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"two agents of this node are named {name!r}")
    return tuple(specs), handlers


@dataclass
class NodeServices:
    """The services of one node, wired to each other, over any :class:`Host`.

    The daemon builds them over a MeshHost; in-process tests build them the same way over an
    InMemoryHost. ``clock`` is the wall clock of signatures, ages and expiry (tests drive it
    from trio's clock). The services see the host through the node's per-peer budgets
    (``limits``): what a peer's streams may make them do is bounded before they see it.
    """

    membership: Membership
    knowledge: KnowledgeService
    tasks: TaskService
    trust: TrustService
    asker: Asker
    mesh: MeshA2A
    sessions: SessionServer
    client: A2AClient
    limits: PeerLimits

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
        candidates: Callable[[], Mapping[str, Sequence[str]]] = dict,
        agents: Sequence[Agent] = (),
    ) -> NodeServices:
        """``candidates``: peers found by LAN discovery (peer ID -> addresses), dialed as the
        peers learned by gossip are. ``agents``: agents in code given in-process, hosted
        besides the config's."""
        faults = faults if faults is not None else Faults()
        limits = PeerLimits(config.limits)
        host = LimitedHost(host, limits)
        task_store = TaskStore(faults=faults, limits=limits)
        tasks: TaskService | None = None
        membership = Membership(
            config, host, signer, version=__version__,
            agent_cards=lambda: [card_to_wire(c) for c in tasks.cards()] if tasks else [],
            load=lambda: float(task_store.running()),
            clock=clock, faults=faults, candidates=candidates,
        )
        knowledge = KnowledgeService(config, host, membership, signer, store, faults=faults)
        specs, handlers = _agent_specs(config, agents)
        answerer = Answerer(store, llm)
        tasks = TaskService(host, specs, answerer, knowledge,
                            version=__version__, store=task_store)
        trust = TrustService(config, host, signer, clock=clock,
                             mesh_size=lambda: len(membership.table) + 1,
                             on_bad=membership.report_bad_message)
        # Passages count as much as their author's record with this node (never more than
        # a stranger's): a peer caught answering badly stops feeding its records to answers.
        answerer.author_weight = lambda author: min(1.0, trust.graph.experience(author))
        membership.bad_message_listeners.append(trust.bad_message)
        membership.bad_message_listeners.append(limits.bad_gossip)
        membership.handshake_listeners.append(trust.peer_joined)
        # A full peer table keeps the peers this node trusts (see PeerTable).
        membership.table.standing = trust.graph.relative_trust
        # Refused work is evidence against the peer; shared budgets favour good records.
        limits.listeners.append(trust.refused)
        limits.standing = trust.graph.experience
        knowledge.replicator.budget.standing = trust.graph.experience
        knowledge.replicator.serve_budget.standing = trust.graph.experience
        knowledge.replicator.on_sync_refused = limits.refuse
        client = A2AClient(host)
        asker = Asker(host, membership, tasks, SkillIndex(embedder, trio.CapacityLimiter(2)),
                      trust.graph, settings=config.routing, faults=faults, client=client,
                      knowledge=knowledge)
        tasks.forwarder = asker.answer_forwarded
        delegator = Delegator(asker)
        for spec in specs:
            hosted: HostedAgent | None = None
            if spec.kind == "code":
                hosted = CodeAgent(spec, handlers[spec.name], knowledge,
                                   card=agent_card(spec, version=__version__),
                                   consult=delegator.consult)
            elif spec.kind == "remote":
                hosted = RemoteAgent(spec, peer_id=signer.peer_id, version=__version__)
            elif spec.consults:
                hosted = ConsultingAgent(spec, tasks, delegator)
            if hosted is not None:
                tasks.hosted[spec.name] = hosted
        mesh = MeshA2A(asker, tasks, network_id=config.network_id, version=__version__)
        return cls(membership, knowledge, tasks, trust, asker, mesh, SessionServer(tasks, limits),
                   client, limits)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the mesh until cancelled."""
        # Agents are for nodes of this mesh: a peer without a verified hello gets no task run.
        self.tasks.serve(admit=partial(self.membership.gate.wait, timeout=HELLO_TIMEOUT_S))
        self.sessions.serve()  # the same agents, admitted and budgeted as tasks.serve's
        async with trio.open_nursery() as nursery:
            await nursery.start(self.client.run)
            await nursery.start(self.membership.run)
            await nursery.start(self.knowledge.run)
            await nursery.start(self.trust.run)
            await nursery.start(self.asker.run)
            await nursery.start(self.mesh.run)
            for hosted in self.tasks.hosted.values():
                await nursery.start(hosted.serve)
            task_status.started()
