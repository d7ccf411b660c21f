"""Learning from answers: what the asking node keeps in shared memory, and when.

Memory improves with use, never with echoes:

- **Only the asker writes, only after acceptance.** The node that asked keeps an answer as a
  solution (``problem_solutions``, kind ``solution``) once its user accepted it (its rating
  window passed without a bad rating) or rated it good. The record is signed by the asking
  node: it is that node's statement that the answer was accepted. The answering node writes
  nothing on its own say-so, so a peer cannot make another node sign its question.
- **Only what was verified.** The solution holds the answer's sentences that the asker found
  supported by the records they cite (:mod:`meshnode.ask.quality`), never the question
  asked: "Problem: <question>" then "Solution: <supported sentences>". Agents serve only the
  solution part (:func:`meshnode.agents.grounding.passage_of`). Its meta names the question,
  the answering peer and agent, the task, the verdict, the records backing it
  (``sources``) and how often it was confirmed.
- **Merged, not stacked.** A new solution to a question this node already has a solution
  for (the same keywords, :data:`SAME_QUESTION`) replaces it; the count of confirmations
  goes up when the new answer rests on the same records.
- **Withdrawn when wrong.** An answer rated bad withdraws (tombstones) this node's own
  solutions that it cited.
- **History is not knowledge.** Each verdict is also logged in ``collaboration_history``,
  which agents do not read by default.

:meth:`Learner.clean` tombstones this node's own solutions that predate these rules: echoes
(a solution that only restates its question) and solutions written without an acceptance
(``meshnode memory clean``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import trio

from memory.errors import MemoryStoreError
from meshnode.agents.grounding import keys, passage_of, restates
from meshnode.agents.passages import _fit, _id_list, _meta_text, _sentences
from meshnode.node.faults import Faults
from meshnode.node.knowledge import KnowledgeError, KnowledgeService
from protocols.records import MAX_AGENT_LEN, MemoryRecord, MetaValue

log = logging.getLogger(__name__)
#: Two questions are the same when their keyword sets overlap this much (Jaccard).
SAME_QUESTION = 0.7
#: Pending verdicts; more are dropped (and logged) rather than queued without bound.
QUEUE = 256
_MERGE_POOL = 20
_PAGE = 500


@dataclass(frozen=True, slots=True)
class Lesson:
    """What the asker keeps of an answer it took, until the verdict on it."""

    question: str
    task_id: str
    peer: str  # who really answered (for a forwarded question, not the neighbour)
    agent: str
    text: str  # the answer as shown
    solution: str  # its verified sentences: "" when none
    sources: tuple[str, ...]  # the records backing those sentences
    cited: tuple[str, ...]  # every record it cited
    learnable: bool  # the answering agent allows its answers to be kept


def same_question(a: str, b: str) -> bool:
    ka, kb = keys(a), keys(b)
    return bool(ka | kb) and len(ka & kb) / len(ka | kb) >= SAME_QUESTION


def _recorded_question(record: MemoryRecord) -> str:
    question = record.meta.get("question")
    if isinstance(question, str) and question:
        return question
    first = record.text.split("\n", 1)[0]
    return first.removeprefix("Problem:").strip()


def _sources(record: MemoryRecord) -> set[str]:
    value = record.meta.get("sources")
    return set(value.split(",")) if isinstance(value, str) and value else set()


def is_echo(record: MemoryRecord) -> bool:
    """A solution with nothing in it but its own question (or nothing at all)."""
    passage = passage_of(record.collection, record.kind, record.text)
    question = _recorded_question(record)
    said = _sentences(passage) or ([passage] if passage.strip() else [])
    return all(restates(s, question) for s in said)


class Learner:
    """Writes this node's verdicts on the answers it took (see the module docstring)."""

    def __init__(self, knowledge: KnowledgeService, *, faults: Faults | None = None) -> None:
        self.knowledge = knowledge
        self.self_id = knowledge.signer.peer_id
        self.faults = faults if faults is not None else Faults()
        self._send, self._receive = trio.open_memory_channel[tuple[Lesson, str]](QUEUE)
        self.written = 0
        self.withdrawn = 0
        self.dropped = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for lesson, verdict in self._receive:
            # Memory failing for one verdict must not stop learning from the next ones.
            with self.faults.contained("learning", task=lesson.task_id):
                await self.learn(lesson, verdict)

    def offer(self, lesson: Lesson, verdict: str) -> None:
        """Queue ``verdict`` ("accepted", "rated_good" or "rated_bad") on ``lesson``."""
        try:
            self._send.send_nowait((lesson, verdict))
        except trio.WouldBlock:
            self.dropped += 1
            log.warning("verdict not kept: learning is behind", extra={"task": lesson.task_id})

    async def learn(self, lesson: Lesson, verdict: str) -> list[MemoryRecord]:
        """Write the verdict's history record and, for an acceptance, the solution."""
        meta: dict[str, MetaValue] = {
            "question": _meta_text(lesson.question), "peer": _meta_text(lesson.peer),
            "agent": _meta_text(lesson.agent), "task": _meta_text(lesson.task_id),
            "verdict": verdict,
        }
        if lesson.cited:
            meta["cited"] = _id_list(lesson.cited)
        agent = lesson.agent[:MAX_AGENT_LEN]
        written = [await self.knowledge.add(
            _fit(f"Question: {lesson.question.strip()}\n\nAnswer from {lesson.agent}: "
                 f"{lesson.text}"),
            kind="exchange", collection="collaboration_history", meta=meta, agent=agent)]
        if verdict == "rated_bad":
            await self._withdraw(lesson.cited)
        elif lesson.learnable and lesson.solution:
            written.append(await self._solution(lesson, verdict, meta, agent))
        return written

    async def _solution(
        self, lesson: Lesson, verdict: str, meta: dict[str, MetaValue], agent: str
    ) -> MemoryRecord:
        duplicates = await self._own_solutions_to(lesson.question)
        confirmations = 1
        for old in duplicates:
            count = old.meta.get("confirmations")
            agrees = bool(_sources(old) & set(lesson.sources)) or \
                passage_of(old.collection, old.kind, old.text) == lesson.solution
            if agrees and isinstance(count, int) and not isinstance(count, bool):
                confirmations = max(confirmations, count + 1)
        # An answer resting on a solution being replaced rests on what that one rested on.
        replaced = {old.id: old for old in duplicates}
        sources = [i for source in lesson.sources
                   for i in (sorted(_sources(replaced[source])) if source in replaced
                             else [source])]
        solution_meta = {k: v for k, v in meta.items() if k != "cited"}
        solution_meta.update(confirmations=confirmations,
                             sources=_id_list(dict.fromkeys(sources)))
        record = await self.knowledge.add(
            _fit(f"Problem: {lesson.question.strip()}\n\nSolution: {lesson.solution}"),
            kind="solution", collection="problem_solutions", meta=solution_meta, agent=agent)
        for old in duplicates:  # replaced: one solution per question and author
            await self.knowledge.delete(old.id)
        self.written += 1
        return record

    async def _own_solutions_to(self, question: str) -> list[MemoryRecord]:
        hits = await self.knowledge.store.search(question, k=_MERGE_POOL,
                                                 collection="problem_solutions")
        return [h.record for h in hits
                if h.record.author == self.self_id and h.record.kind == "solution"
                and same_question(question, _recorded_question(h.record))]

    async def _withdraw(self, cited: tuple[str, ...]) -> None:
        if not cited:
            return
        for record in await self.knowledge.store.get(list(cited)):
            if (record.author == self.self_id and record.collection == "problem_solutions"
                    and not record.is_tombstone):
                await self.knowledge.delete(record.id)
                self.withdrawn += 1

    # ---- cleaning up older memories -----------------------------------------------------

    async def clean(self, *, dry_run: bool) -> list[dict[str, Any]]:
        """This node's own solutions that break the rules above, tombstoned unless
        ``dry_run``: echoes, and solutions no acceptance stands behind (no ``verdict``:
        written by an answering node on its own say-so, before these rules)."""
        found: list[dict[str, Any]] = []
        store = self.knowledge.store
        after = 0
        while batch := await store.records_since(self.self_id, after, _PAGE):
            after = batch[-1].seq
            for record in batch:
                if record.collection != "problem_solutions" or record.is_tombstone:
                    continue
                reason = ("echo: it only restates its question" if is_echo(record) else
                          "unaccepted: written without the asker's acceptance"
                          if record.meta.get("verdict") not in ("accepted", "rated_good")
                          else "")
                if reason:
                    found.append({"id": record.id, "question": _recorded_question(record),
                                  "reason": reason})
        if not dry_run:
            for row in found:
                try:
                    await self.knowledge.delete(row["id"])
                    row["deleted"] = True
                except (MemoryStoreError, KnowledgeError) as exc:  # e.g. gone meanwhile
                    row["deleted"], row["error"] = False, str(exc)
        return found
