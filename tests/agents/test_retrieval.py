"""meshnode.agents.retrieval: which hits of a pool are relevant to a question. A passage
must share several of the question's keywords (all, when it has fewer), not just one word
that any field uses; a near-paraphrase (high similarity from a learned embedder) needs none."""

from __future__ import annotations

import pytest

from memory.store import SearchHit
from meshnode.agents.retrieval import (
    MIN_SCORE,
    MIN_SHARED_TERMS,
    STRONG_SCORE,
    rank_hits,
    shares_enough,
)
from protocols.peerid import Signer
from protocols.records import new_record

SIGNER = Signer.from_seed(bytes(range(32)))
PLANETS = "Which planets in the solar system have rings?"  # planet, solar, system, ring


def hit(text: str, score: float, collection: str = "expert_knowledge") -> SearchHit:
    record = new_record(SIGNER, collection=collection, tenant="t", text=text,
                        kind="knowledge", agent="", created=1.0, seq=1)
    return SearchHit(record, score, collection)


def test_one_shared_word_is_not_a_topic() -> None:
    # Well above the hashing floor, but "system" is all it has of the question.
    build = hit("The build system reads pyproject.toml and makes a wheel.", 0.30)
    assert build.score >= MIN_SCORE
    assert rank_hits(PLANETS, [build], 5) == []


def test_two_shared_keywords_are() -> None:
    rings = hit("Saturn has the brightest rings of any planet; Jupiter's are faint.", 0.30)
    build = hit("The build system reads pyproject.toml and makes a wheel.", 0.30)
    ranked = rank_hits(PLANETS, [build, rings], 5)
    assert [r.hit for r in ranked] == [rings]


def test_a_question_with_one_keyword_needs_only_that_one() -> None:
    hnsw = hit("HNSW builds a multi-layer proximity graph.", 0.20)
    assert [r.hit for r in rank_hits("What is HNSW?", [hnsw], 5)] == [hnsw]
    assert rank_hits("What is IVF?", [hnsw], 5) == []


def test_a_near_paraphrase_needs_no_shared_keyword() -> None:
    # A learned embedder's high similarity says the same thing in other words.
    close = hit("Upsert overwrites the entity with that primary key.", STRONG_SCORE)
    assert [r.hit for r in rank_hits(PLANETS, [close], 5, floor=0.28)] == [close]
    # ...but not for a solution, whose vector holds the question it records.
    solution = hit("Problem: x\nSolution: Upsert overwrites the entity.", 0.9,
                   "problem_solutions")
    assert rank_hits(PLANETS, [solution], 5) == []


@pytest.mark.parametrize(
    ("wanted", "shared", "enough"),
    [
        ({"planet", "solar", "system", "ring"}, {"system"}, False),
        ({"planet", "solar", "system", "ring"}, {"system", "ring"}, True),
        ({"canary", "release"}, {"release"}, False),
        ({"canary", "release"}, {"canary", "release"}, True),
        ({"hnsw"}, {"hnsw"}, True),
        ({"hnsw"}, set(), False),
        (set(), set(), False),  # a question of stopwords alone matches nothing
    ],
)
def test_shares_enough(wanted: set[str], shared: set[str], enough: bool) -> None:
    assert MIN_SHARED_TERMS == 2
    assert shares_enough(wanted, shared) is enough
