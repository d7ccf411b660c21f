"""SkillIndex: how relevant each known agent is to a question, by embedding similarity.

An agent's skills (rendered by :func:`meshnode.agents.skills.skill_texts`) are embedded once
per distinct card with this node's own embedder and cached; a question is embedded once and
compared with every skill in one matrix product. An agent's relevance is its best skill's
cosine similarity.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import trio
from numpy.typing import NDArray

from memory.embedders import Embedder, cosine_similarities

MAX_CACHED = 4096
#: Above this many skill vectors the comparison runs in a worker thread, off the event loop
#: (a mesh of a thousand agents with a few skills each is some 5 ms of matrix work).
THREAD_ROWS = 2048


class SkillIndex:
    def __init__(self, embedder: Embedder, limiter: trio.CapacityLimiter) -> None:
        self._embedder = embedder
        self._limiter = limiter
        self._cache: OrderedDict[tuple[str, ...], NDArray[np.float64]] = OrderedDict()

    async def _embed(self, texts: Sequence[str]) -> NDArray[np.float64]:
        vectors = await trio.to_thread.run_sync(self._embedder.embed, list(texts),
                                                limiter=self._limiter)
        return np.asarray(vectors, dtype=np.float64)

    async def score(
        self, question: str, agents: Sequence[tuple[str, Sequence[str]]]
    ) -> dict[str, float]:
        """``agents`` is (key, skill texts) per agent; returns key -> relevance in [-1, 1]."""
        missing = sorted({tuple(texts) for _, texts in agents if texts} - set(self._cache))
        flat = [text for texts in missing for text in texts]
        vectors = await self._embed([question, *flat])
        question_vector, rest = vectors[0], vectors[1:]
        for texts in missing:  # copies, so the cache does not pin the whole batch
            self._cache[texts], rest = rest[: len(texts)].copy(), rest[len(texts) :]
        # Every distinct skill set once, as rows of one matrix: (start, end) rows per set.
        spans: dict[tuple[str, ...], tuple[int, int]] = {}
        blocks: list[NDArray[np.float64]] = []
        rows = 0
        for _, skills in agents:
            texts = tuple(skills)
            if texts in self._cache and texts not in spans:
                self._cache.move_to_end(texts)
                spans[texts] = (rows, rows + len(self._cache[texts]))
                rows += len(self._cache[texts])
                blocks.append(self._cache[texts])
        while len(self._cache) > MAX_CACHED:
            self._cache.popitem(last=False)
        similarity = await self._compare(question_vector, blocks, rows)
        scores: dict[str, float] = {}
        for key, skills in agents:
            start, end = spans.get(tuple(skills), (0, 0))
            scores[key] = float(similarity[start:end].max()) if end > start else 0.0
        return scores

    async def _compare(
        self, query: NDArray[np.float64], blocks: list[NDArray[np.float64]], rows: int
    ) -> NDArray[np.float64]:
        if not blocks:
            return np.zeros(0)
        compare = functools.partial(_stacked_cosines, query, blocks)
        if rows <= THREAD_ROWS:
            return compare()
        return await trio.to_thread.run_sync(compare, limiter=self._limiter)

    async def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two texts (not cached: answers are seen once)."""
        first, second = await self._embed([a, b])
        return float(cosine_similarities(first, second[None, :])[0])


def _stacked_cosines(
    query: NDArray[np.float64], blocks: list[NDArray[np.float64]]
) -> NDArray[np.float64]:
    return cosine_similarities(query, np.vstack(blocks))
