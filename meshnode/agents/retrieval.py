"""Retrieval: which records of memory are relevant to a question, and what of each may be
served.

A wide pool of nearest neighbours is re-ranked by similarity plus keyword overlap weighted
by rarity within the pool (so "HNSW" counts for more than "Milvus"), and a record must
share keywords with the question unless its similarity is high: at least
:data:`MIN_SHARED_TERMS` of them (all, for a question with fewer). One word in common is
chance, not a topic: "When is the best time of year to plant tomatoes?" and a passage on
tuning a Milvus index share "time", and the hashing embedder, whose similarity is itself
shared words and character n-grams, puts them near enough. When no record is relevant by
this rule, the agent says it found nothing, and the asker, whose recall uses the same
rule, answers "no expert". What is compared and served is each record's *passage*
(:func:`meshnode.agents.grounding.passage_of`): for a solution record its answer part
only, so that a record is never served as the answer to the question it records. Used by
the agents that answer and by the asker that routes (whose memory tells it which peers
hold knowledge about a question).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from memory.store import MAX_K, MemoryStore, SearchHit
from meshnode.agents.grounding import passage_of
from meshnode.agents.passages import _compact, _Idf, _terms

# The similarities are those of the node's embedder. The built-in hashing embedder gives
# small numbers (shared words); learned models (MiniLM, OpenAI's) put unrelated texts at
# 0.0-0.2 and related ones above 0.3. Measured on the tune split of bench/eval (off-topic
# questions' best passage at most 0.21 with MiniLM, on-topic ones' at least 0.34).
#: A hit sharing a keyword with the question is relevant from this cosine similarity on,
#: with the hashing embedder...
MIN_SCORE = 0.12
#: ...and with a learned one.
MIN_SCORE_LEARNED = 0.28
#: Records whose author weighs less than this (trust, see rank_hits) are not used.
MIN_AUTHOR_WEIGHT = 0.25
#: Hits at or above this score are relevant even without a shared keyword (paraphrases);
#: not solutions, whose vectors include the question they record.
STRONG_SCORE = 0.45
#: A hit sharing this share of the question's keyword weight is relevant at any similarity.
LEXICAL_ALONE = 0.45
#: How much keyword overlap adds to similarity when ranking hits.
LEXICAL_WEIGHT = 0.5
#: How many of the question's keywords a hit must share (below STRONG_SCORE): a topic is
#: several of its terms together, as a search engine's "minimum should match". Chosen on
#: the tune split of bench/eval: with one, an off-topic question got an answer (hashing),
#: and the passages kept were less often from the labelled files (both embedders); see
#: bench/RESULTS.md.
MIN_SHARED_TERMS = 2


@dataclass(frozen=True, slots=True)
class Retrieved:
    hit: SearchHit
    passage: str  # what of the record may be served (see the module docstring)
    relevance: float  # similarity plus weighted keyword overlap


def pool_size(k: int) -> int:
    return min(max(8 * k, 40), MAX_K)


def min_score(embedder: str) -> float:
    """The similarity from which a hit sharing a keyword is relevant, for an embedder."""
    return MIN_SCORE if embedder.startswith("hashing") else MIN_SCORE_LEARNED


def shares_enough(wanted: set[str], shared: set[str]) -> bool:
    """Whether ``shared`` (keywords a passage has of the question's ``wanted``) is enough
    for the passage to be about the question: MIN_SHARED_TERMS of them, or all when the
    question has fewer (never none)."""
    return bool(shared) and len(shared) >= min(MIN_SHARED_TERMS, len(wanted))


def rank_hits(
    question: str, pool: Sequence[SearchHit], k: int, *, unique: bool = True,
    floor: float = MIN_SCORE, weight: Callable[[str], float] | None = None,
) -> list[Retrieved]:
    """The relevant hits of ``pool`` for ``question``, best first: at most ``k``, possibly
    none; without duplicate passages (the same text from several authors) if ``unique``.
    ``floor`` is :func:`min_score` of the embedder that scored the pool. ``weight`` (0..1 per
    author, from trust) multiplies a hit's relevance; an author under
    :data:`MIN_AUTHOR_WEIGHT` is left out."""
    kept: dict[str, tuple[SearchHit, str]] = {}
    for hit in sorted(pool, key=lambda h: (-h.score, h.record.id)):
        passage = passage_of(hit.collection, hit.record.kind, hit.record.text)
        key = _compact(passage)
        if key:
            kept.setdefault(key if unique else hit.record.id, (hit, passage))
    hits = list(kept.values())
    wanted = _terms(question)
    terms = [_terms(passage) for _, passage in hits]
    idf = _Idf(terms)
    ranked: list[Retrieved] = []
    for (hit, passage), have in zip(hits, terms, strict=True):
        shared = wanted & have
        lexical = idf.share(wanted, shared)
        strong = hit.score >= STRONG_SCORE and hit.collection == "expert_knowledge"
        if not (strong or (shares_enough(wanted, shared)
                           and (hit.score >= floor or lexical >= LEXICAL_ALONE))):
            continue
        author = 1.0 if weight is None else min(weight(hit.record.author), 1.0)
        if author >= MIN_AUTHOR_WEIGHT:
            ranked.append(Retrieved(hit, passage, (hit.score + LEXICAL_WEIGHT * lexical) * author))
    ranked.sort(key=lambda r: (-r.relevance, r.hit.record.id))
    return ranked[:k]


async def retrieve(
    store: MemoryStore, question: str, collections: Sequence[str], k: int, *,
    unique: bool = True,
) -> list[Retrieved]:
    """The records of ``collections`` relevant to ``question``, best first (at most k)."""
    pool: list[SearchHit] = []
    for collection in collections:
        pool.extend(await store.search(question, k=pool_size(k), collection=collection))
    return rank_hits(question, pool, k, unique=unique, floor=min_score(store.embedder.name))
