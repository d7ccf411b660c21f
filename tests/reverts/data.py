"""Reverts for the data side of the hostile-peers issue (see tests/reverts/__init__.py).

Each ``_old_*`` function is e70e586's code for one finding, re-created against today's
signatures; each ``_revert_*`` puts it (and only it) back with ``monkeypatch``. The smaller
items of finding 9 are in :mod:`tests.reverts.data_small`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import pytest
import trio

import meshnode.agents.answering as answering
from memory.budget import AuthorBudget
from memory.marks import Marks
from memory.replication import AnnouncementStatus, Replicator
from memory.store import MemoryStore, SearchHit
from meshnode.a2a.lifecycle import TaskRun
from meshnode.a2a.tasks import ASKER_KEY, TaskService
from meshnode.agents.answering import (
    MAX_CONTEXT_CHARS,
    MAX_PASSAGE_CHARS,
    Answer,
    Answerer,
)
from meshnode.agents.llm import LLMClient
from meshnode.agents.passages import _fit, _id_list, _meta_text, _renumber, _strip_markers
from meshnode.agents.retrieval import MIN_SCORE, Retrieved, rank_hits
from meshnode.agents.specs import AgentSpec
from meshnode.node.knowledge import KnowledgeService
from meshnode.node.topics import SignedTopic
from meshnode.node.transport import GossipMessage
from protocols.a2a import Message
from protocols.delegation import Delegation
from protocols.errors import DecodeError, ProtocolError, Rejected
from protocols.memsync import (
    Batch,
    ClientState,
    OverBudget,
    RecordsReceived,
    SyncClient,
    SyncStateError,
)
from protocols.records import MAX_AGENT_LEN, MemoryRecord, MetaValue, record_from_wire
from tests.reverts import data_small
from tests.reverts.revert import Revert

# -- 3. sync gaps hide records -----------------------------------------------------------


def _old_check_batch(self: SyncClient, batch: Batch) -> RecordsReceived:
    """e70e586 protocols/memsync.py:365-378: any seq above the last one taken is accepted."""
    accepted: list[MemoryRecord] = []
    after = self._have.get(batch.author, 0)
    for wire in batch.records:
        try:
            record = record_from_wire(wire)
            if record.author != batch.author or record.tenant != self.tenant or (
                record.seq <= after
            ):
                raise DecodeError(
                    f"record {record.id} is {record.author}#{record.seq} of "
                    f"{record.tenant!r}; expected {batch.author} after #{after}"
                )
        except ProtocolError as exc:
            return RecordsReceived(batch.author, tuple(accepted), (str(exc),))
        accepted.append(record)
        after = record.seq
    return RecordsReceived(batch.author, tuple(accepted))


def _old_applied(self: SyncClient, kept: int | None = None) -> None:
    """Today's acknowledgement, but the mark moves to the seq of the last record kept (as
    e70e586's client set ``_have[author] = record.seq``), not by the positions accounted."""
    event = self._handed
    if self.state is not ClientState.APPLYING or event is None:
        raise SyncStateError(f"no batch to acknowledge in state {self.state.name}")
    count = len(event.records) if kept is None else kept
    if count:
        self._have[event.author] = event.records[count - 1].seq
    if self._handed_done or count < len(event.records):
        self._todo.remove(event.author)
    self._handed = None
    self.state = ClientState.PULLING
    self._request_next()


def _old_account(
    self: Marks, author: str, positions: Iterable[int], *, held: Iterable[int] = ()
) -> int:
    """e70e586 memory/store.py:178: an author's high-water mark is the highest seq stored,
    whatever lies below it (so replication.py:217 counts a hidden record as a duplicate)."""
    entry = self._authors.get(author)
    held = list(held)
    mark = max([entry.mark if entry is not None else 0, *held])
    self.load(author, mark, mark, set())
    return mark


def _old_walk(
    author: str, held: Iterable[int], freed: Iterable[int], legacy: Iterable[int] = ()
) -> tuple[int, int, set[int]]:
    """e70e586 memory/store.py:150-154: on open, the mark is the highest seq held."""
    top = max(held, default=0)
    return top, top, set()


def _revert_sync_gaps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SyncClient, "_check_batch", _old_check_batch)
    monkeypatch.setattr(SyncClient, "applied", _old_applied)
    monkeypatch.setattr(Marks, "account", _old_account)
    monkeypatch.setattr(Marks, "walk", staticmethod(_old_walk))
    # e70e586's server answered a pull with the records after the seq, tombstones by their
    # own seq only (replication.py:240): no entry per position.
    monkeypatch.setattr(MemoryStore, "entries_since", MemoryStore.records_since)


SYNC_GAPS = Revert(
    name="sync-gaps",
    finding="3. sync gaps hide records",
    before=(
        "The sync client took any record with a seq above its mark and moved the mark to it "
        "(e70e586 protocols/memsync.py:365-378), and the store's mark was the highest seq "
        "held, so a hidden record's later announcement counted as a duplicate "
        "(memory/replication.py:217, memory/store.py:178)."
    ),
    apply=_revert_sync_gaps,
    tests=(
        "tests/sync/test_hostile_sync.py::"
        "test_a_server_that_withholds_cannot_make_the_client_skip_a_record",
        "tests/sync/test_hostile_sync.py::"
        "test_a_withheld_record_stays_wanted_and_its_announcement_is_applied",
        "tests/node/test_hostile_data_inmemory.py::test_a_sync_peer_cannot_hide_a_record",
        "tests/node/test_hostile_data_inmemory.py::"
        "test_a_partial_backup_import_leaves_the_rest_wanted",
    ),
)


# -- 4. one record stops a node ----------------------------------------------------------


async def _old_on_announcement(
    self: KnowledgeService, message: GossipMessage, records: tuple[MemoryRecord, ...]
) -> None:
    """e70e586 meshnode/knowledge.py:134-148: the store's verdict is awaited bare, so a
    MemoryStoreError (an embedder refusing the record) leaves the listener."""
    outcome = await self.replicator.apply_announced_many(message.origin, records)
    if outcome.status is AnnouncementStatus.GAP:
        connected = self.membership.verified_connected()
        source = message.origin if message.origin in connected else None
        if source is None and connected:
            source = random.choice(sorted(connected))
        if source is not None:
            self.request_sync(source)
    elif outcome.status is AnnouncementStatus.REJECTED:  # counted, as today
        raise Rejected(outcome.reason)
    elif outcome.status is AnnouncementStatus.REFUSED:
        raise OverBudget(outcome.reason)


async def _old_listen(
    self: SignedTopic[Any],
    messages: AsyncIterator[GossipMessage],
    handle: Callable[[GossipMessage, Any], Awaitable[None]],
) -> None:
    """e70e586's gossip listeners caught ProtocolError only (knowledge.py:134-148,
    trust_service.py:91-99): anything else a message caused ended the listener's task."""
    async for message in messages:
        if message.origin == self.self_id:
            continue
        try:
            author, item = self._decode(message.data)
            if author == self.self_id:
                continue
            self.codec.admit(item)
            await handle(message, item)
        except ProtocolError as exc:
            self.rejected[type(exc).__name__] += 1
            logging.getLogger(__name__).debug("gossip rejected: %s", exc)
        else:
            self.accepted += 1


def _revert_store_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(KnowledgeService, "_on_announcement", _old_on_announcement)
    monkeypatch.setattr(SignedTopic, "_listen", _old_listen)


STORE_FAULT = Revert(
    name="store-fault-stops-node",
    finding="4. one record stops a node",
    before=(
        "The knowledge listener awaited Replicator.on_announcement with no handler for "
        "MemoryStoreError, and caught only ProtocolError around it (e70e586 "
        "meshnode/knowledge.py:134-148): a record the embedder refused ended the listener "
        "and with it the node's service nursery."
    ),
    apply=_revert_store_fault,
    tests=(
        "tests/node/test_hostile_data_inmemory.py::"
        "test_a_record_the_store_refuses_does_not_stop_the_node",
    ),
)



async def _old_take(
    self: Replicator, peer: str, records: Sequence[MemoryRecord], session: Any
) -> tuple[int, int]:
    """e70e586 memory/replication.py:280-284: a pulled batch was put in one write, and a
    MemoryStoreError ended the whole sync (every author after it too). Today's budget check
    (another finding) is kept."""
    async with self._apply_lock:
        allowed, _ = await self._admit(records)
        kept = list(records[:allowed])
        if not kept:
            return 0, 0
        return len(kept), await self._store.put(kept)


SYNC_STORE_FAULT = Revert(
    name="sync-store-fault",
    finding="4. one record stops a node",
    before=(
        "A pulled batch was stored in one put with no per-record fallback (e70e586 "
        "memory/replication.py:280-284): one record the embedder refused failed the whole "
        "sync, so every author after it stayed behind."
    ),
    apply=lambda mp: mp.setattr(Replicator, "_take", _old_take),
    tests=(
        "tests/sync/test_hostile_sync.py::"
        "test_a_record_the_store_refuses_stops_its_author_only_until_the_next_sync",
    ),
)

# -- 8. any key publishes unlimited records ----------------------------------------------


def _no_author_budget(self: AuthorBudget, records: Sequence[MemoryRecord],
                      now: float) -> tuple[int, str]:
    return len(records), ""


def _revert_author_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AuthorBudget, "admit", _no_author_budget)
    monkeypatch.setattr(AuthorBudget, "throttled", lambda self, author, now: False)


AUTHOR_BUDGETS = Revert(
    name="author-budgets",
    finding="8. records: any key publishes unlimited records",
    before=(
        "Every verified record of any author was stored and embedded, by announcement "
        "(e70e586 memory/replication.py:205-227) or sync (:280-284): no records-per-hour or "
        "bytes budget per author."
    ),
    apply=_revert_author_budgets,
    tests=(
        "tests/node/test_hostile_data_inmemory.py::test_a_flooding_author_is_held_to_its_budget",
        "tests/sync/test_hostile_sync.py::"
        "test_an_author_over_its_hourly_budget_is_slowed_not_cut_off",
        "tests/sync/test_hostile_sync.py::test_an_author_over_its_bytes_budget_is_refused",
        "tests/memory/test_budget_tables.py::test_a_swarm_of_fresh_keys_shares_one_budget",
    ),
)


async def _old_finish(
    self: TaskService, run: TaskRun, spec: AgentSpec, message: Message, answer: Answer, *,
    received: Delegation | None = None, extra: dict[str, Any] | None = None,
) -> None:
    await _FINISH(self, run, spec, message, answer, received=received, extra=extra)
    await _old_record(self, spec, message, answer, run.task.id)


async def _old_record(
    self: TaskService, spec: AgentSpec, message: Message, answer: Answer, task_id: str
) -> None:
    """e70e586 meshnode/tasks.py:270-283 and answering.py:370-412: after answering anyone's
    question, the node wrote it to collaboration_history and, the answer being grounded, to
    problem_solutions, under its own signature, with the asker the message claimed."""
    if not spec.writes:
        return
    asker = message.metadata.get(ASKER_KEY)
    meta: dict[str, MetaValue] = {
        "asker": _meta_text(asker if isinstance(asker, str) else "unknown"),
        "agent": _meta_text(spec.name), "task": _meta_text(task_id), "mode": answer.mode,
        "accepted": answer.grounded,
    }
    if answer.model:
        meta["model"] = _meta_text(answer.model)
    if answer.citations:
        meta["sources"] = _id_list(c.id for c in answer.citations)
    agent = spec.name[:MAX_AGENT_LEN]
    question = message.text.strip()
    exchange = await self.knowledge.add(
        _fit(f"Question: {question}\n\nAnswer from {spec.name}: {answer.text}"),
        kind="exchange", collection="collaboration_history", meta=meta, agent=agent)
    if answer.grounded and answer.body:
        solution = {k: v for k, v in meta.items() if k != "accepted"}
        solution["exchange"] = exchange.id
        await self.knowledge.add(_fit(f"Problem: {question}\n\nSolution: {answer.body}"),
                                 kind="solution", collection="problem_solutions",
                                 meta=solution, agent=agent)


_FINISH = TaskService.finish

LAUNDERING = Revert(
    name="answer-laundering",
    finding="8. records: remote questions laundered into problem_solutions",
    before=(
        "The answering node recorded every exchange it answered, for any peer, in "
        "collaboration_history and (grounded) problem_solutions, signed by itself "
        "(e70e586 meshnode/tasks.py:270-283, meshnode/answering.py:370-412)."
    ),
    apply=lambda mp: mp.setattr(TaskService, "finish", _old_finish),
    tests=(
        "tests/node/test_hostile_data_inmemory.py::"
        "test_a_strangers_question_is_not_laundered_into_solutions",
    ),
)


def _unweighted_rank_hits(
    question: str, pool: Sequence[SearchHit], k: int, *, unique: bool = True,
    floor: float = MIN_SCORE, weight: Callable[[str], float] | None = None,
) -> list[Retrieved]:
    return rank_hits(question, pool, k, unique=unique, floor=floor)


AUTHORS_UNFILTERED = Revert(
    name="authors-unfiltered",
    finding="8. records: passages of any author into LLM prompts",
    before=(
        "Retrieval ranked every record by relevance alone, whoever wrote it (e70e586 "
        "meshnode/passages.py rank_hits, meshnode/answering.py:190-205): no author weight, "
        "no author left out for the node's trust in it."
    ),
    apply=lambda mp: mp.setattr(answering, "rank_hits", _unweighted_rank_hits),
    tests=(
        "tests/node/test_hostile_data_inmemory.py::"
        "test_records_of_an_author_the_node_distrusts_stay_out_of_answers",
        "tests/agents/test_answer.py::test_the_node_can_filter_and_down_weight_authors",
    ),
)


async def _old_with_llm(
    self: Answerer, llm: LLMClient, spec: AgentSpec, question: str, hits: list[Retrieved],
    deadline: float, retrieval_s: float,
) -> Answer:
    """e70e586 meshnode/answering.py:227-264: passages numbered ``[n] (from collection)``,
    unfenced, and no word that they are data, not instructions."""
    passages: list[str] = []
    used: list[Retrieved] = []
    room = MAX_CONTEXT_CHARS
    for hit in hits:
        text = hit.passage.strip()[:MAX_PASSAGE_CHARS]
        if used and len(text) > room:
            break
        used.append(hit)
        passages.append(f"[{len(used)}] (from {hit.hit.collection})\n{text}")
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
    return Answer(text, tuple(self._citation(used[i]) for i in order), "llm", llm.model,
                  retrieval_s, llm_s, records=tuple(used[i].hit.record for i in order),
                  body=_strip_markers(text))


PROMPT_UNFENCED = Revert(
    name="prompt-unfenced",
    finding="8. records: passages of any author into LLM prompts unfenced",
    before=(
        "Passages went into the prompt as plain '[n] (from collection)' blocks, with no "
        "random fence and no instruction that they are untrusted data (e70e586 "
        "meshnode/answering.py:236-253)."
    ),
    apply=lambda mp: mp.setattr(Answerer, "_with_llm", _old_with_llm),
    tests=("tests/agents/test_answer.py::test_passages_are_quoted_as_untrusted_data",),
)

REVERTS: tuple[Revert, ...] = (
    SYNC_GAPS, STORE_FAULT, SYNC_STORE_FAULT, AUTHOR_BUDGETS, LAUNDERING, AUTHORS_UNFILTERED,
    PROMPT_UNFENCED, *data_small.REVERTS,
)
NOT_ATTACKS: dict[str, str] = {
    "tests/sync/test_hostile_sync.py::test_this_nodes_own_records_are_never_budgeted": (
        "honest path: this node's own records (its own writes, or pulled back after a "
        "restore) are exempt from the author budgets; nothing to revert"
    ),
}
