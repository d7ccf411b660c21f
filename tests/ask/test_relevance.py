"""meshnode.ask.relevance: SkillIndex (agents scored by their best skill, off the loop when
big), and recall (whose knowledge this node's memory holds about a question)."""

from __future__ import annotations

import threading

import pytest
import trio

from memory.embedders import HashingEmbedder
from memory.store import MemoryStore
from meshnode.ask import relevance
from meshnode.ask.relevance import SkillIndex, recall

AGENTS = [
    ("milvus", ["Vector indexes: HNSW, IVF_FLAT, search tuning", "Milvus Lite files"]),
    ("python", ["Python packaging: pip, venv, pyproject.toml"]),
    ("nothing", []),
]


def index() -> SkillIndex:
    return SkillIndex(HashingEmbedder(), trio.CapacityLimiter(2))


async def test_the_best_skill_decides() -> None:
    scores = await index().score("Which HNSW index parameters speed up search?", AGENTS)
    assert scores["milvus"] > scores["python"] > -1.0
    assert scores["nothing"] == 0.0  # an agent without skills is never relevant


async def test_a_large_comparison_runs_in_a_worker_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    question = "How do I make a venv for my package?"
    inline = await index().score(question, AGENTS)
    threads: list[bool] = []
    stacked = relevance._best_of_blocks

    def spy(*args: object) -> object:
        threads.append(threading.current_thread() is threading.main_thread())
        return stacked(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(relevance, "_best_of_blocks", spy)
    assert await index().score(question, AGENTS) == inline
    monkeypatch.setattr(relevance, "THREAD_ROWS", 1)
    assert await index().score(question, AGENTS) == pytest.approx(inline)
    assert threads == [True, False]  # small: on the loop; above THREAD_ROWS: in a thread


async def test_similarity_of_two_texts() -> None:
    skills = index()
    assert await skills.similarity("pip install", "pip install") == pytest.approx(1.0)
    assert await skills.similarity("pip install", "HNSW graph") < 0.5


async def test_recall_finds_no_holder_for_an_off_topic_question(kb_store: MemoryStore) -> None:
    # An off-topic question of bench/eval's tune split: its one word in common with the
    # demo knowledge base ("time") made a Milvus passage relevant, and its author an expert.
    found = await recall(kb_store, "When is the best time of year to plant tomatoes?")
    assert found.holders == {} and found.relevant == frozenset()
    on_topic = await recall(kb_store, "What does the ef search parameter of an HNSW index do?")
    assert on_topic.holders and on_topic.relevant
