"""An ask's relevance work is bounded however many agents the mesh announces (issue 9, item
5): at most MAX_SCORED agents are scored, the trusted first, and at most MAX_NEW_EMBEDDED skill
sets never seen before are embedded per ask."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from memory.embedders import HashingEmbedder
from meshnode.a2a.lifecycle import TaskStore
from meshnode.a2a.tasks import TaskService
from meshnode.ask.asker import Asker, AskError
from meshnode.ask.candidates import MAX_NEW_EMBEDDED, MAX_SCORED
from meshnode.ask.relevance import SkillIndex
from meshnode.config import RoutingSettings
from meshnode.node.peers import PeerTable
from meshnode.trust.graph import Outcome, TrustGraph
from protocols.a2a import AgentCard, AgentSkill, card_to_wire
from protocols.peerid import Signer

SYBILS = 3000


class CountingEmbedder(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.texts = 0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.texts += len(texts)
        return super().embed(texts)


class RecordingIndex(SkillIndex):
    scored: list[list[str]]

    async def score(self, question: str, agents: Sequence[tuple[str, Sequence[str]]], *,
                    max_new: int | None = None) -> dict[str, float]:
        self.scored.append([key for key, _ in agents])
        return await super().score(question, agents, max_new=max_new)


def card(name: str) -> dict[str, Any]:
    return card_to_wire(AgentCard(name=name, description=f"{name} knows everything",
                                  version="1", skills=(AgentSkill(
                                      id="all", name=name, description=f"all about {name}"),)))


async def test_an_ask_scores_a_bounded_number_of_a_swarms_agents() -> None:
    me, trusted = Signer.generate(), Signer.generate()
    sets = [(trusted.peer_id, "t" * 64, (card("trusted-expert"),))]
    sets += [(Signer.from_seed(i.to_bytes(32, "big")).peer_id, f"{i:064x}", (card(f"s{i}"),))
             for i in range(1, SYBILS + 1)]
    membership: Any = SimpleNamespace(signer=me, table=PeerTable(me.peer_id, 60.0),
                                      verified_connected=set, agent_sets=lambda: sets,
                                      config=SimpleNamespace(tenant="test"))
    knowledge: Any = SimpleNamespace(signer=me, add=None)
    tasks = TaskService(None, (), None, knowledge,  # type: ignore[arg-type]
                        version="test", store=TaskStore())
    trust = TrustGraph(me.peer_id, [me.peer_id])
    for _ in range(5):
        trust.record(trusted.peer_id, Outcome.ACCEPTED, now=1.0)
    trust.compute_global()
    embedder = CountingEmbedder()
    index = RecordingIndex(embedder, trio.CapacityLimiter(2))
    index.scored = []
    asker = Asker(None, membership, tasks, index, trust,  # type: ignore[arg-type]
                  settings=RoutingSettings(min_relevance=0.99, hop_limit=0))
    for _ in range(3):
        with pytest.raises(AskError):
            await asker.ask("how do I tune an index?", timeout=30)
    assert len(index.scored) == 3
    for scored in index.scored:
        assert len(scored) <= MAX_SCORED
        assert f"{trusted.peer_id}/trusted-expert" in scored  # the trusted peer is never cut
    # One text per skill set, plus the question: a bounded number of new ones per ask.
    assert embedder.texts <= 3 * (MAX_NEW_EMBEDDED + 1)
