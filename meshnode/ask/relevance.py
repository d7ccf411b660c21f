"""How relevant each known agent is to a question: by its skills, and by its knowledge.

SkillIndex: embedding similarity of the question with the agent's skills.

An agent's skills (rendered by :func:`meshnode.agents.skills.skill_texts`) are embedded once
per distinct card with this node's own embedder and cached; a question is embedded once and
compared with every skill in one matrix product. An agent's relevance is its best skill's
cosine similarity.

:func:`recall`: which records of this node's own memory are relevant to the question, and
which peers authored them.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import trio
from numpy.typing import NDArray

from memory.embedders import Embedder, cosine_similarities
from memory.store import MemoryStore
from meshnode.agents.retrieval import retrieve

MAX_CACHED = 4096
#: Above this many skill vectors the comparison runs in a worker thread, off the event loop
#: (a thousand agents with three skills each: some 15 ms, see bench/bench_relevance.py).
THREAD_ROWS = 2048


class SkillIndex:
    def __init__(self, embedder: Embedder, limiter: trio.CapacityLimiter) -> None:
        self._embedder = embedder
        self._limiter = limiter
        self._cache: OrderedDict[tuple[str, ...], NDArray[np.float64]] = OrderedDict()

    async def _embed(self, texts: Sequence[str]) -> NDArray[np.float64]:
        # An embedder holds nothing a late thread could misuse, so the ask's deadline need
        # not wait for a slow one: the thread is abandoned (it keeps its limiter token until
        # it ends, so abandoned calls cannot pile up).
        vectors = await trio.to_thread.run_sync(self._embedder.embed, list(texts),
                                                limiter=self._limiter, abandon_on_cancel=True)
        return np.asarray(vectors, dtype=np.float64)

    async def score(
        self, question: str, agents: Sequence[tuple[str, Sequence[str]]], *,
        max_new: int | None = None,
    ) -> dict[str, float]:
        """``agents`` is (key, skill texts) per agent; returns key -> relevance in [-1, 1].

        At most ``max_new`` skill sets not embedded before are embedded now (the first ones
        of ``agents``); the others score 0 this time, and are embedded by later calls.
        """
        missing = list(dict.fromkeys(tuple(texts) for _, texts in agents
                                     if texts and tuple(texts) not in self._cache))
        missing = missing[:max_new] if max_new is not None else missing
        flat = [text for texts in missing for text in texts]
        vectors = await self._embed([question, *flat])
        question_vector, rest = vectors[0], vectors[1:]
        for texts in missing:  # copies, so the cache does not pin the whole batch
            self._cache[texts], rest = rest[: len(texts)].copy(), rest[len(texts) :]
        # Every distinct skill set once, as consecutive rows of one matrix.
        blocks: dict[tuple[str, ...], int] = {}
        for _, skills in agents:
            texts = tuple(skills)
            if texts in self._cache and texts not in blocks:
                self._cache.move_to_end(texts)
                blocks[texts] = len(blocks)
        matrices = [self._cache[texts] for texts in blocks]
        while len(self._cache) > MAX_CACHED:
            self._cache.popitem(last=False)
        best = await self._best(question_vector, matrices)
        scores: dict[str, float] = {}
        for key, skills in agents:
            block = blocks.get(tuple(skills))
            scores[key] = 0.0 if block is None else float(best[block])
        return scores

    async def _best(
        self, query: NDArray[np.float64], matrices: list[NDArray[np.float64]]
    ) -> NDArray[np.float64]:
        """The best cosine similarity with ``query`` in each of ``matrices`` (skill sets)."""
        if not matrices:
            return np.zeros(0)
        compare = functools.partial(_best_of_blocks, query, matrices)
        if sum(len(m) for m in matrices) <= THREAD_ROWS:
            return compare()
        return await trio.to_thread.run_sync(compare, limiter=self._limiter)

    async def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two texts (not cached: answers are seen once)."""
        first, second = await self._embed([a, b])
        return float(cosine_similarities(first, second[None, :])[0])


def _best_of_blocks(
    query: NDArray[np.float64], matrices: list[NDArray[np.float64]]
) -> NDArray[np.float64]:
    """One matrix product for all skill sets, then the maximum of each set's rows."""
    similarity = cosine_similarities(query, np.vstack(matrices))
    starts = np.cumsum([0] + [len(m) for m in matrices[:-1]])
    best: NDArray[np.float64] = np.maximum.reduceat(similarity, starts)
    return best


#: How many of this node's most relevant records it recalls for a question.
RECALL_K = 20


@dataclass(frozen=True, slots=True)
class Recall:
    """What this node's own replica of memory says about a question."""

    #: Peer -> relevance of the best record it authored in ``expert_knowledge``, for the
    #: peers holding any knowledge relevant to the question.
    holders: dict[str, float]
    #: The ids of the records relevant to the question (knowledge and solutions).
    relevant: frozenset[str]


async def recall(store: MemoryStore, question: str) -> Recall:
    """The records of this node's memory relevant to ``question``, by the same retrieval
    agents use (:func:`meshnode.agents.retrieval.retrieve`). In a replicated mesh every
    node holds every record, so the asker can see whose knowledge answers a question before
    asking anyone, and which passages an answer should rest on."""
    holders: dict[str, float] = {}
    # Every author of a relevant passage holds it, even when several hold the same text.
    found = await retrieve(store, question, ("expert_knowledge", "problem_solutions"),
                           RECALL_K, unique=False)
    for item in found:
        if item.hit.collection == "expert_knowledge":
            author = item.hit.record.author
            holders[author] = max(holders.get(author, 0.0), item.relevance)
    return Recall(holders, frozenset(item.hit.record.id for item in found))
