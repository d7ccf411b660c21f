"""The asker's own judgement of an answer, and its record of each agent's answers.

Nothing the answering node says about its answer is taken on trust. Each citation must name
a record that exists: carried with the answer in its signed form (its id re-derived from its
content, its author's signature checked, of this mesh's tenant) or held in this node's own
replica of memory. Each sentence must be supported by a record it cites, and the cited
passages must be relevant to the question (:func:`meshnode.agents.grounding.check_answer`):

- **faithfulness**: the share of the answer's sentences supported by what they cite;
- **retrieval precision**: the share of cited passages relevant to the question: passages
  holding most of its keywords, or that this node's own retrieval recalls for it (the
  embedder's judgement, from its own replica of memory);
- **quality**: the share of sentences supported by a relevant cited passage. An answer that
  restates the question, cites nothing, cites records that do not exist or quotes passages
  about something else scores 0. Routing takes answers by quality (x trust).

An agent in code or a remote A2A server (answer mode "code" or "remote") may answer without
citing memory (a calculator): such an answer, if it cites nothing, is scored by its
similarity to the question instead, at most :data:`UNCITED_WEIGHT` (so below any grounded
answer), and 0 if it merely repeats the question (:func:`repeats`).

Two answers *agree* (:meth:`AnswerQuality.agrees`) when their supported sentences rest on a
common record or share most of their keywords: an answer that agrees with the one taken
corroborates it, and shares its verdict.

:class:`QualityBook` keeps the running figures per agent for ``meshnode agents`` and the
dashboard.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from memory.store import MemoryStore
from meshnode.agents.grounding import (
    Grounding,
    check_answer,
    passage_of,
    supported_ids,
)
from protocols.errors import ProtocolError
from protocols.records import MemoryRecord, is_record_id, record_from_json

#: Bounds on what is read of an answer from a peer.
MAX_CITATIONS = 64
MAX_RECORDS = 16
MAX_CHECKED_CHARS = 64 * 1024
#: Agents that do not answer from memory (in code, or an A2A server brought onto the mesh).
UNCITED_MODES = ("code", "remote")
#: What an uncited answer of theirs can score at most: its similarity to the question times
#: this, so that any answer grounded in memory beats it.
UNCITED_WEIGHT = 0.5
_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class AnswerQuality:
    grounding: Grounding
    cited: tuple[str, ...]  # the cited record ids, in citation order
    unverified: int  # citations whose record could not be found or checked
    #: For an uncited answer of an agent that does not answer from memory (UNCITED_MODES):
    #: UNCITED_WEIGHT x its similarity to the question, in place of the grounded quality.
    estimate: float | None = None
    #: Who authored each cited record (its signer's peer ID; "" if not found or a
    #: solution), by citation.
    authors: tuple[str, ...] = ()
    #: The cited records that are solutions (problem_solutions).
    solutions: frozenset[str] = frozenset()

    @property
    def faithfulness(self) -> float:
        return self.grounding.faithfulness

    @property
    def retrieval_precision(self) -> float:
        return self.grounding.retrieval_precision

    @property
    def quality(self) -> float:
        return self.grounding.quality if self.estimate is None else self.estimate

    def figures(self) -> dict[str, Any]:
        """What every answer reports (``ask --json``, A2A data part, dashboard)."""
        return {
            "faithfulness": round(self.faithfulness, 3),
            "retrieval_precision": round(self.retrieval_precision, 3),
            "quality": round(self.quality, 3),
            "sentences": len(self.grounding.sentences),
            "supported": sum(s.supported for s in self.grounding.sentences),
            "unverified_citations": self.unverified,
            "grounded_check": self.estimate is None,
        }

    def explain(self) -> dict[str, Any]:
        """Per sentence: what it cites, how well, and why it does not count."""
        return {**self.figures(),
                "checks": [s.to_json() for s in self.grounding.sentences],
                "relevant_passages": list(self.grounding.relevant_passages)}

    def supported_text(self) -> str:
        return self.grounding.supported_text()

    def sources(self) -> list[str]:
        """The ids of the records backing the supported sentences."""
        return supported_ids(self.grounding, self.cited)

    def agrees(self, other: AnswerQuality) -> bool:
        """Whether this answer says nothing that ``other`` does not: its supported sentences
        rest only on records that ``other``'s rest on. Shared keywords are not enough (a
        liar's passages can be phrased like the truth and say the opposite), nor is one
        common record (in a replicated mesh a liar can quote the truth beside its own). An
        answer with nothing supported agrees with nothing."""
        mine = set(self.sources())
        return bool(mine) and mine <= set(other.sources())

    def rests_on_own(self, peer: str) -> bool:
        """Whether every knowledge record its supported sentences rest on was authored by
        ``peer``: an agent corroborates with its own knowledge, not by quoting another's (a
        liar can quote an honest expert's replicated records). Solutions (accepted answers,
        signed by the nodes that accepted them) may be quoted by anyone."""
        author = dict(zip(self.cited, self.authors, strict=False))
        mine = self.sources()
        return bool(mine) and all(i in self.solutions or author.get(i) == peer for i in mine)


def repeats(text: str, question: str) -> bool:
    """Whether ``text`` says nothing but (a run of) the question's words, in its order. Word
    order counts here, unlike :func:`meshnode.agents.grounding.restates`: an agent in code
    may rightly answer with the question's words ("gamma beta alpha" reversed)."""
    said, asked = _WORD.findall(text.casefold()), _WORD.findall(question.casefold())
    n = len(said)
    return any(asked[i:i + n] == said for i in range(len(asked) - n + 1))


def _cited_ids(data: dict[str, Any]) -> list[str]:
    citations = data.get("citations")
    if not isinstance(citations, list):
        return []
    ids = []
    for c in citations[:MAX_CITATIONS]:
        value = c.get("id") if isinstance(c, dict) else None
        ids.append(value if isinstance(value, str) and is_record_id(value) else "")
    return ids


def _carried(data: dict[str, Any], tenant: str, wanted: set[str]) -> dict[str, MemoryRecord]:
    """The carried records that verify (id, signature, tenant) and are cited."""
    rows = data.get("records")
    found: dict[str, MemoryRecord] = {}
    if not isinstance(rows, list):
        return found
    for row in rows[:MAX_RECORDS]:
        try:
            record = record_from_json(row)
        except (ProtocolError, ValueError):
            continue  # a forged or damaged record backs nothing
        if record.id in wanted and record.tenant == tenant and not record.is_tombstone:
            found[record.id] = record
    return found


class AnswerChecker:
    """Checks answers against the records they cite (see the module docstring)."""

    def __init__(
        self, tenant: str, store: MemoryStore | None = None, *,
        similarity: Callable[[str, str], Awaitable[float]] | None = None,
    ) -> None:
        self.tenant = tenant
        self.store = store
        #: This node's embedder's similarity of two texts, for uncited answers.
        self.similarity = similarity

    async def check(
        self, question: str, data: dict[str, Any], recalled: frozenset[str] = frozenset()
    ) -> AnswerQuality:
        """Raises MemoryStoreError only when this node's own store fails. ``recalled``: the
        records this node's own retrieval finds relevant to the question (a cited passage
        is relevant if it is one of them, or holds most of the question's keywords)."""
        text = data.get("text")
        text = text[:MAX_CHECKED_CHARS] if isinstance(text, str) else ""
        ids = _cited_ids(data)
        wanted = {i for i in ids if i}
        records = _carried(data, self.tenant, wanted)
        missing = sorted(wanted - set(records))
        if missing and self.store is not None:
            for record in await self.store.get(missing):
                if not record.is_tombstone:
                    records[record.id] = record
        passages: list[str | None] = []
        for record_id in ids:
            cited = records.get(record_id)
            passages.append(None if cited is None else
                            passage_of(cited.collection, cited.kind, cited.text) or None)
        grounding = check_answer(question, text, passages, [i in recalled for i in ids])
        estimate = None
        if not wanted and data.get("mode") in UNCITED_MODES and self.similarity is not None \
                and text.strip():
            # Nothing to check it against: only whether it is on the question, and never
            # a mere echo of it. A peer that says "code" to escape the checks gains no more
            # than UNCITED_WEIGHT.
            estimate = 0.0 if repeats(text, question) else UNCITED_WEIGHT * max(
                0.0, min(1.0, await self.similarity(question, text)))
        # A solution is the mesh's accepted answer, nobody's own knowledge: its author is "".
        authors = tuple(records[i].author if i in records
                        and records[i].collection != "problem_solutions" else "" for i in ids)
        solutions = {i for i in ids if i in records
                     and records[i].collection == "problem_solutions"}
        return AnswerQuality(grounding, tuple(ids), sum(p is None for p in passages), estimate,
                             authors, frozenset(solutions))


@dataclass(slots=True)
class _Tally:
    answers: int = 0
    faithfulness: float = 0.0
    retrieval_precision: float = 0.0
    quality: float = 0.0
    chosen: int = 0

    def to_json(self) -> dict[str, Any]:
        n = self.answers or 1
        return {"answers": self.answers, "chosen": self.chosen,
                "faithfulness": round(self.faithfulness / n, 3),
                "retrieval_precision": round(self.retrieval_precision / n, 3),
                "quality": round(self.quality / n, 3)}


class QualityBook:
    """Running figures of the answers this node checked, per (peer, agent); bounded."""

    def __init__(self, keep: int = 1024) -> None:
        self.keep = keep
        self._tallies: OrderedDict[tuple[str, str], _Tally] = OrderedDict()

    def record(self, peer: str, agent: str, quality: AnswerQuality, *, chosen: bool) -> None:
        key = (peer, agent)
        tally = self._tallies.pop(key, None) or _Tally()
        tally.answers += 1
        tally.faithfulness += quality.faithfulness
        tally.retrieval_precision += quality.retrieval_precision
        tally.quality += quality.quality
        tally.chosen += chosen
        self._tallies[key] = tally
        while len(self._tallies) > self.keep:
            self._tallies.popitem(last=False)

    def summary(self, peer: str, agent: str) -> dict[str, Any] | None:
        tally = self._tallies.get((peer, agent))
        return tally.to_json() if tally is not None else None

    def to_json(self) -> list[dict[str, Any]]:
        return [{"peer_id": peer, "agent": agent, **tally.to_json()}
                for (peer, agent), tally in self._tallies.items()]
