"""Who can answer: the agents this node knows and the candidates an ask scores among them.

The agent directory owns the agents known here (this node's own, and those announced in
peers' presence cards, decoded once per card set and kept in a bounded cache), the bound on
how many of them one ask scores and embeds (a swarm of announced identities cannot make
every ask score it), their relevance to a question (their skills, and the knowledge their
node holds) and the routing candidates built from it with each peer's trust, load and
latency. It is split from the asker (meshnode.ask.asker), which owns the asking itself: the
waves, the answers' checks and the verdicts.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import Any

from meshnode.a2a.tasks import TaskService
from meshnode.agents.specs import skill_texts
from meshnode.ask.policy import Candidate, relevance
from meshnode.ask.relevance import Recall, SkillIndex, recall
from meshnode.node.knowledge import KnowledgeService
from meshnode.node.membership import Membership
from meshnode.trust.graph import TrustGraph
from protocols.a2a import AgentCard, card_from_wire
from protocols.errors import ProtocolError

#: Agents scored for relevance per ask, and skill sets embedded for the first time per ask
#: (bounds an ask's work however many agents the mesh announces; see AgentDirectory.bounded).
MAX_SCORED = 512
MAX_NEW_EMBEDDED = 128
#: Decoded agent card sets kept, by digest.
MAX_CARD_SETS = 4096


def _decoded(wires: tuple[dict[str, Any], ...]) -> list[AgentCard]:
    cards = []
    for wire in wires:
        try:
            cards.append(card_from_wire(wire))
        except ProtocolError:
            continue  # a peer's bad card only hides that agent
    return cards


class AgentDirectory:
    """The agents this node knows, and how relevant each is to a question."""

    def __init__(
        self, membership: Membership, tasks: TaskService, skills: SkillIndex,
        trust: TrustGraph, knowledge: KnowledgeService | None, rng: random.Random,
    ) -> None:
        self.membership = membership
        self.tasks = tasks
        self.skills = skills
        self.trust = trust
        self.knowledge = knowledge
        self._rng = rng
        self.self_id = membership.signer.peer_id
        self._cards: OrderedDict[str, tuple[AgentCard, ...]] = OrderedDict()

    def known_agents(self) -> list[tuple[str, AgentCard]]:
        agents = [(self.self_id, card) for card in self.tasks.cards()]
        for peer, digest, wires in self.membership.agent_sets():
            cards = self._cards.get(digest)
            if cards is None:
                cards = self._cards[digest] = tuple(_decoded(wires))
                while len(self._cards) > MAX_CARD_SETS:
                    self._cards.popitem(last=False)
            agents += [(peer, card) for card in cards]
        return agents

    def bounded(self, known: list[tuple[str, AgentCard]]) -> list[tuple[str, AgentCard]]:
        """At most MAX_SCORED agents, the most trusted peers' first (then those this node is
        connected to): a swarm of announced identities cannot make every ask score it."""
        if len(known) <= MAX_SCORED:
            return known
        connected = self.membership.verified_connected()
        order = sorted(known, key=lambda pc: (pc[0] != self.self_id,
                                              -self.trust.relative_trust(pc[0]),
                                              pc[0] not in connected, self._rng.random()))
        return order[:MAX_SCORED]

    async def relevance(
        self, question: str, known: list[tuple[str, AgentCard]], named: bool
    ) -> tuple[dict[str, float], dict[str, float], Recall]:
        """(raw skill similarity, knowledge relevance of its node) per "peer/agent" key, and
        what this node's own memory recalls about the question. Raises MemoryStoreError when
        this node's embedder or memory fails."""
        skills = await self.skills.score(
            question, [(f"{peer}/{card.name}", skill_texts(card)) for peer, card in known],
            max_new=MAX_NEW_EMBEDDED,
        )
        memory = Recall({}, frozenset()) if self.knowledge is None else \
            await recall(self.knowledge.store, question)
        holders = {} if named else memory.holders
        knowledge = {f"{p}/{c.name}": holders[p] for p, c in known if p in holders}
        return skills, knowledge, memory

    def candidates(
        self, known: list[tuple[str, AgentCard]], skills: dict[str, float],
        knowledge: dict[str, float], floor: float,
    ) -> list[Candidate]:
        """The known agents whose skills reach ``floor`` or whose node holds relevant
        knowledge, as routing candidates."""
        # Raw similarities depend on the embedder (the built-in one gives small numbers):
        # the threshold applies to them, the ranking to their share of the best one's. An
        # agent whose node holds relevant knowledge is a candidate whatever its skills say.
        best_skill = max(skills.values(), default=0.0)
        best_known = max(knowledge.values(), default=0.0)
        candidates = []
        for p, c in known:
            key = f"{p}/{c.name}"
            if skills[key] < floor and key not in knowledge:
                continue
            held = knowledge.get(key, 0.0) / best_known if best_known > 0 else None
            share = skills[key] / best_skill if best_skill > 0 else 0.0
            candidates.append(self._candidate(p, c, relevance(share, held)))
        return candidates

    def _candidate(self, peer: str, card: AgentCard, relevance: float) -> Candidate:
        record = self.membership.table.get(peer)
        presence = record.presence if record else None
        return Candidate(
            agent=card.name, peer_id=peer, relevance=max(0.0, relevance),
            trust=self.trust.relative_trust(peer),
            load=presence.load if presence else 0.0,
            rtt_ms=0.0 if peer == self.self_id else (record.rtt_ms if record else None),
            experience=self.trust.experience(peer),
        )

    def unknown_peers(self, visited: frozenset[str]) -> int:
        """Peers this node knows of but has no agent card from: agents not yet known."""
        return sum(1 for record in self.membership.table
                   if record.presence is None and record.peer_id not in visited)
