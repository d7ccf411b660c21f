"""How the agents of a node answer questions.

One :class:`Answerer` per node answers for all of its agents: it retrieves the most relevant
records from the agent's collections, then either asks the LLM to answer from those
numbered passages with ``[n]`` citations, or, with no LLM configured, answers extractively:
it quotes the sentences of the retrieved records that best match the question, cites them,
and says plainly that it did so. With nothing relevant in memory it says that instead of
inventing an answer. In both modes citation ``[n]`` of ``Answer.text`` is
``Answer.citations[n - 1]``.

:meth:`Answerer.record_exchange` writes the question and answer to collaboration history
and, once accepted, the solution to ``problem_solutions``, through a ``write`` callback (the
node's ``KnowledgeService.add``): this module never signs or stores records itself.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import trio

from memory.embedders import Embedder, cosine_similarities
from memory.errors import MemoryStoreError
from memory.store import MAX_K, MemoryStore, SearchHit
from meshnode.agents.llm import LLMClient
from meshnode.agents.passages import (
    _PRONOUN_START,
    _compact,
    _fit,
    _id_list,
    _Idf,
    _meta_text,
    _renumber,
    _Sentence,
    _sentences,
    _snippet,
    _strip_markers,
    _terms,
)
from meshnode.agents.specs import AgentSpec
from meshnode.errors import MeshnodeError
from protocols.records import MAX_AGENT_LEN, MemoryRecord, MetaValue

log = logging.getLogger(__name__)

# ---- answers -------------------------------------------------------------------------------


class AgentError(MeshnodeError):
    """An answer could not be produced for a reason other than the LLM (see LLMError):
    ``kind`` is "timeout" (the deadline passed while reading memory) or "memory"."""

    def __init__(self, kind: Literal["timeout", "memory"], message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Citation:
    id: str
    collection: str
    author: str
    score: float
    snippet: str


AnswerMode = Literal["llm", "extractive"]


@dataclass(frozen=True, slots=True)
class Answer:
    """An agent's answer. ``mode`` is "llm" when the LLM wrote ``text``, else "extractive"
    (quoted from memory, or the honest "nothing relevant" reply, which has no citations
    and so is not ``grounded``). Timings are wall-clock seconds."""

    text: str
    citations: tuple[Citation, ...]
    mode: AnswerMode
    model: str | None
    retrieval_s: float
    llm_s: float
    #: The text without the extractive preamble and with no [n] markers, as stored as a
    #: solution; empty when nothing relevant was found.
    body: str = field(default="", repr=False)
    #: Of the records it rests on, how many another agent had retrieved and shared with
    #: this one (see Answerer.answer's ``shared``); whether this agent searched memory.
    reused: int = 0
    searched: bool = True

    @property
    def grounded(self) -> bool:
        """Whether the answer rests on at least one cited record."""
        return bool(self.citations)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "mode": self.mode,
            "model": self.model,
            "citations": [
                {"id": c.id, "collection": c.collection, "author": c.author,
                 "score": round(c.score, 4), "snippet": c.snippet}
                for c in self.citations
            ],
            "retrieval_s": round(self.retrieval_s, 4),
            "llm_s": round(self.llm_s, 4),
        }


EXTRACTIVE_PREAMBLE = (
    "No LLM is configured on this node, so this answer is extracted from its memory: "
    "the passages that best match the question, quoted with their sources."
)
# Relevance of a retrieved record (see Answerer._retrieve). The similarities are those of
# the node's embedder; the thresholds suit the built-in hashing embedder and are lenient
# for sentence-transformers models, whose related texts score higher.
#: A hit sharing a keyword with the question is relevant from this cosine similarity on.
MIN_SCORE = 0.12
#: Hits at or above this score are relevant even without a shared keyword (paraphrases).
STRONG_SCORE = 0.45
#: A hit sharing this share of the question's keyword weight is relevant at any similarity.
LEXICAL_ALONE = 0.45
#: How much keyword overlap adds to similarity when ranking hits.
LEXICAL_WEIGHT = 0.5
MAX_PASSAGE_CHARS = 1500
MAX_CONTEXT_CHARS = 6000
MAX_EXTRACT_SENTENCES = 4
MAX_EXTRACT_CHARS = 900
#: Shared records (another agent's retrieval) relevant to the question that spare a search.
REUSE_ENOUGH = 2

WriteFn = Callable[..., Awaitable[MemoryRecord]]


def _similarities(embedder: Embedder, texts: list[str]) -> list[float]:
    """Blocking: the cosine similarity of each of ``texts[1:]`` with ``texts[0]``, computed
    in the same worker thread as the embedding."""
    vectors = embedder.embed(texts)
    return cosine_similarities(vectors[0], vectors[1:]).tolist()  # type: ignore[no-any-return]


class Answerer:
    """Answers questions for the agents of one node; see the module docstring."""

    def __init__(
        self,
        store: MemoryStore,
        llm: LLMClient | None,
        *,
        k: int = 5,
        limiter: trio.CapacityLimiter | None = None,
    ) -> None:
        if not 1 <= k <= 50:
            raise ValueError(f"k must be in 1..50, got {k}")
        self.store = store
        self.llm = llm
        self.k = k
        self._limiter = limiter or trio.CapacityLimiter(2)

    # -- retrieval ------------------------------------------------------------------------

    async def retrieve(self, spec: AgentSpec, question: str) -> list[SearchHit]:
        """The records of the agent's collections relevant to ``question``, best first."""
        ranked, _ = await self._retrieve(spec, question)
        return [hit for _, hit in ranked]

    async def _retrieve(
        self, spec: AgentSpec, question: str, shared: Sequence[SearchHit] = ()
    ) -> tuple[list[tuple[float, SearchHit]], bool]:
        """(relevance, hit) for the records of the agent's collections relevant to
        ``question``, best first, without duplicates: at most ``k``, possibly none; and
        whether memory was searched.

        A wide pool of nearest neighbours is re-ranked by similarity plus keyword overlap
        weighted by rarity within the pool (so "HNSW" counts for more than "Milvus"), and a
        record must share a keyword with the question unless its similarity is high.
        ``shared`` records (another agent's retrieval, already verified) are scored with
        this node's own embedder and join the pool; when REUSE_ENOUGH of them are relevant
        on their own, memory is not searched again.
        """
        pool: list[SearchHit] = []
        offered = [hit for hit in shared if hit.collection in spec.reads]
        if offered:
            pool = await self._rescored(question, offered)
            ranked = self._rank(question, pool)
            if len(ranked) >= min(REUSE_ENOUGH, self.k):
                return ranked, False
        pool_size = min(max(8 * self.k, 40), MAX_K)
        for collection in spec.reads:
            pool.extend(await self.store.search(question, k=pool_size, collection=collection))
        return self._rank(question, pool), True

    async def _rescored(self, question: str, hits: list[SearchHit]) -> list[SearchHit]:
        """``hits`` scored by this node's embedder: a sender's scores are not trusted."""
        embed = functools.partial(_similarities, self.store.embedder,
                                  [question] + [h.record.text for h in hits])
        scores = await trio.to_thread.run_sync(embed, limiter=self._limiter,
                                               abandon_on_cancel=True)
        return [SearchHit(h.record, float(s), h.collection) for h, s in zip(hits, scores,
                                                                             strict=True)]

    def _rank(self, question: str, pool: list[SearchHit]) -> list[tuple[float, SearchHit]]:
        unique: dict[str, SearchHit] = {}
        for hit in sorted(pool, key=lambda h: (-h.score, h.record.id)):
            unique.setdefault(_compact(hit.record.text), hit)
        hits = [hit for text, hit in unique.items() if text]
        wanted = _terms(question)
        terms = [_terms(hit.record.text) for hit in hits]
        idf = _Idf(terms)
        ranked: list[tuple[float, SearchHit]] = []
        for hit, have in zip(hits, terms, strict=True):
            shared = wanted & have
            lexical = idf.share(wanted, shared)
            relevant = hit.score >= STRONG_SCORE or (
                bool(shared) and (hit.score >= MIN_SCORE or lexical >= LEXICAL_ALONE)
            )
            if relevant:
                ranked.append((hit.score + LEXICAL_WEIGHT * lexical, hit))
        ranked.sort(key=lambda pair: (-pair[0], pair[1].record.id))
        return ranked[: self.k]

    # -- answering ------------------------------------------------------------------------

    async def answer(self, spec: AgentSpec, question: str, *, deadline_s: float,
                     shared: Sequence[SearchHit] = ()) -> Answer:
        """Answer ``question`` as ``spec`` within ``deadline_s`` seconds, reusing the
        ``shared`` retrieval of an agent that consulted this one when it is relevant.

        Raises LLMError when the LLM fails (any kind, including its share of the deadline)
        and AgentError when memory cannot be read in time or at all.
        """
        question = question.strip()
        deadline = trio.current_time() + deadline_s
        started = time.perf_counter()
        try:
            with trio.fail_after(max(deadline_s, 0.0)):
                ranked, searched = await self._retrieve(spec, question, shared)
        except trio.TooSlowError:
            raise AgentError("timeout", "reading memory took longer than the deadline") from None
        except MemoryStoreError as exc:
            raise AgentError("memory", f"cannot read memory: {exc}") from exc
        retrieval_s = time.perf_counter() - started
        hits = [hit for _, hit in ranked]
        if not hits:
            answer = self._nothing(spec, retrieval_s)
        elif self.llm is None:
            top = ranked[0][0]
            weights = [relevance / top if top > 0 else 1.0 for relevance, _ in ranked]
            answer = await self._extractive(question, hits, weights, deadline, retrieval_s)
        else:
            answer = await self._with_llm(self.llm, spec, question, hits, deadline, retrieval_s)
        if not shared:
            return answer
        shared_ids = {hit.record.id for hit in shared}
        reused = sum(1 for c in answer.citations if c.id in shared_ids)
        return dataclasses.replace(answer, reused=reused, searched=searched)

    def _nothing(self, spec: AgentSpec, retrieval_s: float) -> Answer:
        searched = ", ".join(spec.reads)
        text = (
            f"I found nothing relevant to this question in this node's memory (searched: "
            f"{searched}), so I cannot answer it rather than guess."
        )
        if self.llm is None:
            text += " No LLM is configured on this node; answers come only from memory."
        return Answer(text, (), "extractive", None, retrieval_s, 0.0)

    async def _with_llm(
        self,
        llm: LLMClient,
        spec: AgentSpec,
        question: str,
        hits: list[SearchHit],
        deadline: float,
        retrieval_s: float,
    ) -> Answer:
        passages: list[str] = []
        used: list[SearchHit] = []
        room = MAX_CONTEXT_CHARS
        for hit in hits:
            text = hit.record.text.strip()[:MAX_PASSAGE_CHARS]
            if used and len(text) > room:
                break
            used.append(hit)
            passages.append(f"[{len(used)}] (from {hit.collection})\n{text}")
            room -= len(text)
        system = (
            f"{spec.instructions}\n\n"
            f"You are the agent {spec.name!r} on a peer-to-peer network of expert agents. "
            "Answer the question using only the numbered passages from shared memory that "
            "the user gives you. After each statement, cite the passages that support it by "
            "their numbers in square brackets, like [1] or [2][3]. If the passages do not "
            "contain the answer, say so plainly instead of guessing. Be concise."
        )
        user = "Passages:\n\n" + "\n\n".join(passages) + f"\n\nQuestion: {question}"
        started = time.perf_counter()
        reply = await llm.chat(
            [{"role": "system", "content": system}, {"role": "user", "content": user}],
            timeout=deadline - trio.current_time(),
        )
        llm_s = time.perf_counter() - started
        text, order = _renumber(reply, len(used))
        citations = tuple(self._citation(used[i]) for i in order)
        return Answer(text, citations, "llm", llm.model, retrieval_s, llm_s,
                      body=_strip_markers(text))

    @staticmethod
    def _citation(hit: SearchHit) -> Citation:
        r = hit.record
        return Citation(r.id, hit.collection, r.author, float(hit.score), _snippet(r.text))

    async def _extractive(
        self,
        question: str,
        hits: list[SearchHit],
        weights: list[float],
        deadline: float,
        retrieval_s: float,
    ) -> Answer:
        candidates: list[_Sentence] = []
        seen: set[str] = set()
        for p, hit in enumerate(hits):
            for position, text in enumerate(_sentences(hit.record.text)):
                key = text.casefold()
                if key not in seen:
                    seen.add(key)
                    candidates.append(_Sentence(text, p, position))
        if not candidates:  # relevant records, but no prose in them (e.g. only code)
            candidates = [
                _Sentence(_snippet(hit.record.text), p, 0) for p, hit in enumerate(hits)
            ]
        await self._score(question, candidates, weights, deadline)
        chosen = self._choose(candidates)
        chosen.sort(key=lambda s: (s.passage, s.position))
        parts: list[str] = []
        for i, sentence in enumerate(chosen):
            parts.append(sentence.text)
            last_of_group = i + 1 == len(chosen) or chosen[i + 1].passage != sentence.passage
            if last_of_group:
                parts.append(f"[{sentence.passage + 1}]")
        body, order = _renumber(" ".join(parts), len(hits))
        citations = tuple(self._citation(hits[i]) for i in order)
        return Answer(f"{EXTRACTIVE_PREAMBLE}\n\n{body}", citations, "extractive", None,
                      retrieval_s, 0.0, body=_strip_markers(body))

    async def _score(
        self, question: str, candidates: list[_Sentence], weights: list[float], deadline: float
    ) -> None:
        """Score sentences by embedding similarity to the question, shared keywords and
        the relevance (``weights``, 0..1) of the passage they come from. An embedder that
        fails or is too slow for the deadline leaves the keywords to decide."""
        similarity = [0.0] * len(candidates)
        texts = [question] + [c.text for c in candidates]
        embed = functools.partial(_similarities, self.store.embedder, texts)
        with trio.move_on_at(deadline):
            try:
                # Embedders hold no resources a late thread could misuse: safe to abandon.
                similarity = await trio.to_thread.run_sync(
                    embed, limiter=self._limiter, abandon_on_cancel=True
                )
            except Exception as exc:  # e.g. an embeddings endpoint failing
                log.info("sentence scoring without embeddings", extra={"error": str(exc)})
        wanted = _terms(question)
        terms = [_terms(c.text) for c in candidates]
        idf = _Idf(terms)
        for candidate, have, cosine in zip(candidates, terms, similarity, strict=True):
            candidate.shares = bool(wanted & have)
            overlap = idf.share(wanted, wanted & have)
            candidate.score = 0.4 * cosine + 0.4 * overlap + 0.2 * weights[candidate.passage]

    @staticmethod
    def _choose(candidates: list[_Sentence]) -> list[_Sentence]:
        ranked = sorted(candidates, key=lambda s: (-s.score, s.passage, s.position))
        best = ranked[0].score
        by_place = {(c.passage, c.position): c for c in candidates}
        chosen: list[_Sentence] = []
        size = 0

        def take(sentence: _Sentence) -> bool:
            nonlocal size
            if sentence in chosen:
                return True
            if chosen and size + len(sentence.text) > MAX_EXTRACT_CHARS:
                return False
            chosen.append(sentence)
            size += len(sentence.text) + 1
            return True

        for sentence in ranked:
            if len(chosen) >= MAX_EXTRACT_SENTENCES or (chosen and sentence.score < 0.65 * best):
                break
            if sentence in chosen or not (sentence.shares or sentence.score >= STRONG_SCORE):
                continue
            # "It ..." or "This ..." needs the sentence before it to make sense.
            before = by_place.get((sentence.passage, sentence.position - 1))
            needs_before = before is not None and _PRONOUN_START.match(sentence.text)
            if before is not None and needs_before and not take(before):
                continue
            take(sentence)
        return chosen

    # -- writing back ---------------------------------------------------------------------

    async def record_exchange(
        self,
        write: WriteFn,
        *,
        spec: AgentSpec,
        question: str,
        answer: Answer,
        asker: str,
        task_id: str,
        accepted: bool,
    ) -> list[MemoryRecord]:
        """Write the exchange to ``collaboration_history`` and, when ``accepted`` and the
        answer is grounded, the solution to ``problem_solutions``; nothing if the agent does
        not write. ``write`` is called like ``KnowledgeService.add(text, kind=,
        collection=, meta=, agent=)``. Returns the records written."""
        if not spec.writes:
            return []
        meta: dict[str, MetaValue] = {
            "asker": _meta_text(asker),
            "agent": _meta_text(spec.name),
            "task": _meta_text(task_id),
            "mode": answer.mode,
            "accepted": accepted,
        }
        if answer.model:
            meta["model"] = _meta_text(answer.model)
        if answer.citations:
            meta["sources"] = _id_list(c.id for c in answer.citations)
        agent = spec.name[:MAX_AGENT_LEN]
        exchange = await write(
            _fit(f"Question: {question.strip()}\n\nAnswer from {spec.name}: {answer.text}"),
            kind="exchange", collection="collaboration_history", meta=meta, agent=agent,
        )
        written = [exchange]
        if accepted and answer.grounded and answer.body:
            solution_meta: dict[str, MetaValue] = {
                k: v for k, v in meta.items() if k != "accepted"
            }
            solution_meta["exchange"] = exchange.id
            written.append(await write(
                _fit(f"Problem: {question.strip()}\n\nSolution: {answer.body}"),
                kind="solution", collection="problem_solutions", meta=solution_meta,
                agent=agent,
            ))
        return written
