"""The Asker on the in-memory mesh: whole nodes as the daemon wires them, with Milvus Lite
stores and extractive agents. A question reaches the relevant agent, fails over when that
agent fails, and the explanation says what happened."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from meshnode.agents.answering import AgentError, Answer
from meshnode.agents.specs import AgentSpec, SkillSpec
from meshnode.config import RoutingSettings
from meshnode.node.inmemory import InMemoryMesh
from meshnode.trust.graph import Outcome
from tests.inmemory import Node, connect, eventually, no_faults, start_nodes

QUESTION = "Which Milvus index should I use for vector search, HNSW or IVF_FLAT?"
ROUTING = RoutingSettings(explore=0.0, fanout=1, max_waves=3)


def _agent(name: str, description: str, tags: tuple[str, ...], example: str) -> AgentSpec:
    return AgentSpec(name=name, description=description, instructions="", skills=(
        SkillSpec(id=name, name=name, description=description, tags=tags, examples=(example,)),
    ))


MILVUS = _agent("milvus-expert", "Milvus vector database: index types HNSW and IVF_FLAT, "
                "collections, flush", ("milvus", "hnsw", "ivf_flat", "index"),
                "Which Milvus index type should I use?")
VECTORS = _agent("vector-search-expert", "Vector search and approximate nearest neighbour "
                 "indexes such as HNSW", ("vector", "search", "hnsw", "ann"),
                 "How does HNSW vector search work?")
CHEF = _agent("chef", "Cooking: recipes, baking bread, pasta sauces", ("cooking", "bread"),
              "How long should I bake sourdough bread?")
TIPS = ["HNSW is the Milvus index to use for low-latency vector search; it needs more memory.",
        "IVF_FLAT is the Milvus index to use when memory is tight; searches are slower."]


class BrokenMemory:
    """An answerer whose memory is gone: every task fails, as a dead disk makes it."""

    async def answer(self, spec: AgentSpec, question: str, *, deadline_s: float) -> Answer:
        raise AgentError("memory", "cannot read memory: disk failure")


async def _mesh(nursery: trio.Nursery, tmp_path: Path) -> tuple[InMemoryMesh, list[Node]]:
    """An asking node with no agents, linked to three nodes of one agent each."""
    mesh = InMemoryMesh()
    nodes = await start_nodes(nursery, mesh, tmp_path, [(), (MILVUS,), (VECTORS,), (CHEF,)],
                              routing=ROUTING)
    asker, milvus, vectors, _ = nodes
    for tip in TIPS:
        await milvus.services.knowledge.add(tip, kind="tip")
        await vectors.services.knowledge.add(tip, kind="tip")
    for node in nodes[1:]:
        await connect(asker, node)
    await eventually(lambda: len(asker.services.asker.known_agents()) == 3, "three agents")
    return mesh, nodes


def _by_agent(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["agent"]: c for c in result["explain"]["candidates"]}


async def test_a_question_reaches_the_relevant_agent(nursery: trio.Nursery,
                                                     tmp_path: Path) -> None:
    mesh, (asker, milvus, _, _) = await _mesh(nursery, tmp_path)
    result = await asker.services.asker.ask(QUESTION, timeout=30)
    assert (result["agent"], result["peer"]) == ("milvus-expert", milvus.id)
    answer = result["answer"]
    assert answer["citations"] and "HNSW" in answer["text"]
    explain = result["explain"]
    ranked = [c["agent"] for c in explain["candidates"]]
    assert ranked[0] == "milvus-expert"
    candidates = _by_agent(result)
    assert candidates["milvus-expert"]["peer_id"] == milvus.id
    relevance = {name: c["factors"]["relevance"] for name, c in candidates.items()}
    assert relevance["milvus-expert"] > relevance["vector-search-expert"]
    assert relevance["milvus-expert"] > relevance.get("chef", 0.0)
    [wave] = explain["waves"]
    assert wave["asked"] == [f"milvus-expert@{milvus.id}"]
    assert wave["outcomes"][0]["state"] == "completed" and wave["outcomes"][0]["quality"] > 0
    assert explain["chosen"]["agent"] == "milvus-expert"
    assert set(result["timings"]) >= {"routing_s", "network_s", "retrieval_s", "total_s"}
    no_faults(mesh)


@pytest.mark.parametrize("fault", ["agent fails", "node unreachable"])
async def test_the_asker_fails_over_when_the_best_agent_fails(
    nursery: trio.Nursery, tmp_path: Path, fault: str
) -> None:
    mesh, (asker, milvus, vectors, _) = await _mesh(nursery, tmp_path)
    if fault == "agent fails":
        milvus.services.tasks.answerer = BrokenMemory()  # type: ignore[assignment]
    else:
        mesh.drop(milvus.id)
    result = await asker.services.asker.ask(QUESTION, timeout=30)
    assert (result["agent"], result["peer"]) == ("vector-search-expert", vectors.id)
    first, second = result["explain"]["waves"][:2]
    failed = first["outcomes"][0]
    assert (failed["agent"], failed["state"]) == ("milvus-expert", "failed")
    assert ("disk failure" if fault == "agent fails" else "unreachable") in failed["reason"]
    assert first["choice"]["chosen"] is None
    assert second["asked"] == [f"vector-search-expert@{vectors.id}"]
    assert second["choice"]["chosen"] == 0
    # The failure is the asker's own evidence against the expert's node.
    counts = asker.services.trust.graph.evidence_counts(milvus.id)
    assert counts == {Outcome.FAILED.value: 1}
    no_faults(mesh)


async def test_a_named_agent_is_asked_even_when_others_fit_better(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    mesh, (asker, _, vectors, _) = await _mesh(nursery, tmp_path)
    result = await asker.services.asker.ask(QUESTION, agent="vector-search-expert", timeout=30)
    assert (result["agent"], result["peer"]) == ("vector-search-expert", vectors.id)
    assert [c["agent"] for c in result["explain"]["candidates"]] == ["vector-search-expert"]
    no_faults(mesh)
