"""SkillIndex: how relevant each known agent is to a question, by embedding similarity.

An agent's skills (name, description, tags, examples) are embedded once per distinct card
with this node's own embedder and cached; a question is embedded once and compared with
every skill. An agent's relevance is its best skill's cosine similarity.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import trio

from memory.embedders import Embedder

MAX_CACHED = 4096


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


class SkillIndex:
    def __init__(self, embedder: Embedder, limiter: trio.CapacityLimiter) -> None:
        self._embedder = embedder
        self._limiter = limiter
        self._cache: OrderedDict[tuple[str, ...], list[list[float]]] = OrderedDict()

    async def _embed(self, texts: Sequence[str]) -> list[list[float]]:
        # An embedder holds nothing a late thread could misuse, so the ask's deadline need
        # not wait for a slow one: the thread is abandoned (it keeps its limiter token until
        # it ends, so abandoned calls cannot pile up).
        return await trio.to_thread.run_sync(self._embedder.embed, list(texts),
                                             limiter=self._limiter, abandon_on_cancel=True)

    async def score(
        self, question: str, agents: Sequence[tuple[str, Sequence[str]]]
    ) -> dict[str, float]:
        """``agents`` is (key, skill texts) per agent; returns key -> relevance in [-1, 1]."""
        missing = sorted({tuple(texts) for _, texts in agents if texts} - set(self._cache))
        flat = [text for texts in missing for text in texts]
        vectors = await self._embed([question, *flat])
        question_vector, rest = vectors[0], vectors[1:]
        for texts in missing:
            self._cache[texts], rest = rest[: len(texts)], rest[len(texts) :]
        while len(self._cache) > MAX_CACHED:
            self._cache.popitem(last=False)
        scores: dict[str, float] = {}
        for key, skills in agents:
            skill_vectors = self._cache.get(tuple(skills), [])
            scores[key] = max((_cosine(question_vector, v) for v in skill_vectors), default=0.0)
        return scores

    async def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two texts (not cached: answers are seen once)."""
        first, second = await self._embed([a, b])
        return _cosine(first, second)
