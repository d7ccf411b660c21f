"""Reverts for the data side of the hostile-peers issue (see tests/reverts/__init__.py).

Each ``_old_*`` function is e70e586's code for one finding, re-created against today's
signatures; each ``_revert_*`` puts it (and only it) back with ``monkeypatch``.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

import memory.ingest as ingest
import memory.store as store_module
import meshnode.agents.answering as answering
import meshnode.node.home as home_module
import protocols.codec as codec
from memory.backend import Backend
from memory.budget import AuthorBudget, PeerSyncBudget
from memory.errors import IngestError
from memory.files import write_atomic
from memory.ingest import SUFFIXES
from memory.marks import _TOMBSTONES, Marks, _Seqs
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
from meshnode.config import CONFIG_FILE, TEMPLATE
from meshnode.errors import ConfigError
from meshnode.node.home import IDENTITY_FILE, TOKEN_FILE, load_signer
from meshnode.node.knowledge import KnowledgeService
from meshnode.node.topics import SignedTopic
from meshnode.node.transport import GossipMessage
from protocols.a2a import Message
from protocols.codec import MAX_FRAME, _no_ext
from protocols.delegation import Delegation
from protocols.envelope import validate_network_id
from protocols.errors import DecodeError, FrameTooLarge, ProtocolError, Rejected
from protocols.memsync import (
    Batch,
    ClientState,
    OverBudget,
    RecordsReceived,
    SyncClient,
    SyncStateError,
)
from protocols.peerid import Signer
from protocols.records import COLLECTIONS, MAX_AGENT_LEN, MemoryRecord, MetaValue, record_from_wire
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

# -- 9. smaller ----------------------------------------------------------------------------


def _swap_code(monkeypatch: pytest.MonkeyPatch, today: Callable[..., Any],
               old: Callable[..., Any]) -> None:
    """Run ``old``'s body wherever ``today`` is called, also through names imported before
    the revert (``from module import function``): the body is swapped, not the name. Names
    in ``old`` resolve in ``today``'s module."""
    monkeypatch.setattr(today, "__code__", old.__code__)


def _old_unpack(data: bytes, *, max_size: int = MAX_FRAME) -> Any:
    """e70e586 protocols/codec.py:33-59: msgpack's own limits only (every length bounded by
    the frame), so a 1 MiB frame may hold a million containers."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_size:
        raise FrameTooLarge(f"message of {len(data)} bytes exceeds the limit of {max_size}")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True,
                               ext_hook=_no_ext, timestamp=0, max_ext_len=0)
    except DecodeError:
        raise
    except (msgpack.UnpackException, ValueError, TypeError, OverflowError) as exc:
        raise DecodeError(f"malformed msgpack: {exc}") from None


FLOODS = ("tests/protocols/test_codec.py::"
          "test_container_floods_cost_memory_in_proportion_to_the_frame")
CODEC_CONTAINERS = Revert(
    name="codec-containers",
    finding="9. a 1 MiB frame of empty maps decodes to ~76 MB",
    before=(
        "unpack called msgpack.unpackb with no container limits (e70e586 "
        "protocols/codec.py:43-55): a 1 MiB frame of empty maps became a million dicts."
    ),
    apply=lambda mp: _swap_code(mp, codec.unpack, _old_unpack),
    tests=tuple(f"{FLOODS}[{case}]" for case in
                ("flat-maps", "chunked-maps", "chunked-lists", "lists-of-lists")),
)


def _decode_again(self: SignedTopic[Any], data: bytes) -> tuple[str, Any]:
    return self.codec.decode(data)


DECODED_TWICE = Revert(
    name="decoded-twice",
    finding="9. an attestation is checked twice",
    before=(
        "The trust topic's validator decoded and verified an attestation, then its listener "
        "decoded and verified it again (e70e586 meshnode/trust_service.py:73-79, 91-95)."
    ),
    apply=lambda mp: mp.setattr(SignedTopic, "_decode", _decode_again),
    tests=("tests/node/test_topics.py::test_a_message_is_checked_once_not_again_when_handled",),
)


SYNC_PULLS = Revert(
    name="sync-pulls-unlimited",
    finding="9. the memsync server answers unlimited pulls",
    before=(
        "Replicator.serve answered every Summary and Pull a peer sent, with no budget "
        "(e70e586 memory/replication.py:228-251)."
    ),
    apply=lambda mp: mp.setattr(PeerSyncBudget, "pull", lambda self, peer, now: ""),
    tests=(
        "tests/sync/test_hostile_sync.py::test_a_peer_over_its_sync_budget_is_told_to_come_back",
        "tests/node/test_hostile_data_inmemory.py::"
        "test_a_peer_pulling_without_end_is_told_to_come_back",
    ),
)


def _old_iter_source_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """e70e586 memory/ingest.py:43-63: every file os.walk lists, links included."""
    found: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser().resolve()
        if path.is_dir():
            for folder, dirs, files in os.walk(path):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                found.update(Path(folder, name) for name in files
                             if not name.startswith(".") and Path(name).suffix.lower() in SUFFIXES)
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise IngestError(f"{raw}: not a text file ({', '.join(sorted(SUFFIXES))})")
            found.add(path)
        else:
            raise IngestError(f"{raw}: no such file or folder")
    return sorted(found)


INGEST_LINKS = Revert(
    name="ingest-follows-links",
    finding="9. ingest follows symlinks out of the folder",
    before=(
        "iter_source_files took every file os.walk listed in the folder, a link to "
        "~/.ssh/notes.md included (e70e586 memory/ingest.py:43-63)."
    ),
    apply=lambda mp: _swap_code(mp, ingest.iter_source_files, _old_iter_source_files),
    tests=("tests/sync/test_ingest.py::test_links_out_of_the_folder_are_not_followed",),
)

INGEST_PATHS = Revert(
    name="ingest-absolute-source",
    finding="9. ingest puts absolute paths in meta.source",
    before=(
        "A chunk's meta.source was the file's absolute path on this machine (e70e586 "
        "memory/ingest.py:336: change.path[-512:])."
    ),
    apply=lambda mp: mp.setattr(ingest, "source_name", lambda path, roots: str(path)),
    tests=("tests/sync/test_ingest.py::test_records_name_their_file_relative_to_the_folder",),
)


def _old_init_home(home: Path, *, network_id: str, force: bool = False) -> tuple[str, bool]:
    """e70e586 meshnode/home.py:47-73: config.toml written with write_text (the umask
    decides its mode) and an existing one left as it is."""
    try:
        validate_network_id(network_id)
    except DecodeError as exc:
        raise ConfigError(str(exc)) from None
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path = home / IDENTITY_FILE
    created = False
    if key_path.exists() and not force:
        signer = load_signer(home)
    else:
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        write_atomic(key_path, pem, private=True)
        signer = Signer(key)
        created = True
    config_path = home / CONFIG_FILE
    if not config_path.exists() or force:
        config_path.write_text(TEMPLATE.format(network_id=network_id), encoding="utf-8")
    if not (home / TOKEN_FILE).exists() or force:
        write_atomic(home / TOKEN_FILE, secrets.token_urlsafe(32), private=True)
    return signer.peer_id, created


CONFIG_UMASK = Revert(
    name="config-umask",
    finding="9. config.toml created with the default umask",
    before=(
        "init_home wrote config.toml (which can hold the network secret) with "
        "Path.write_text, so its mode was the umask's (e70e586 meshnode/home.py:68-70)."
    ),
    apply=lambda mp: _swap_code(mp, home_module.init_home, _old_init_home),
    tests=(
        "tests/node/test_home.py::test_secret_files_are_0600_even_with_a_permissive_umask",
        "tests/node/test_home.py::test_rerun_makes_an_existing_config_private",
    ),
)


def _unverified_marks(backend: Backend) -> Marks:
    """Today's walk over what a backend holds, but every row counts, as e70e586's scan of
    (author, seq) took them (memory/store.py:150-154): none is checked to verify."""
    seqs: dict[str, _Seqs] = {}
    for name in COLLECTIONS:
        for row in backend.scan(name, ("author", "seq")):
            seqs.setdefault(row["author"], _Seqs()).held.add(int(row["seq"]))
        for row in backend.scan(name, ("author", "seq", "meta"), where=_TOMBSTONES):
            seqs.setdefault(row["author"], _Seqs()).add(int(row["seq"]), row.get("meta"), True)
    marks = Marks()
    for author, entry in seqs.items():
        marks.load(author, *Marks.walk(author, entry.held, entry.freed, entry.legacy))
    return marks


PLANTED_ROW = Revert(
    name="planted-row",
    finding="9. a planted row with seq 2^63-1 on a shared Milvus server blocks an author",
    before=(
        "On open the store took each author's highest seq from every row of the collections, "
        "verified or not (e70e586 memory/store.py:150-154), so a planted seq 2^63-1 made "
        "the author's next seq 2^63."
    ),
    apply=lambda mp: mp.setattr(store_module, "load_marks", _unverified_marks),
    tests=("tests/memory/test_store.py::test_a_planted_row_cannot_block_an_author",),
)

REVERTS: tuple[Revert, ...] = (
    SYNC_GAPS, STORE_FAULT, SYNC_STORE_FAULT, AUTHOR_BUDGETS, LAUNDERING, AUTHORS_UNFILTERED,
    PROMPT_UNFENCED, CODEC_CONTAINERS, DECODED_TWICE, SYNC_PULLS, INGEST_LINKS, INGEST_PATHS,
    CONFIG_UMASK, PLANTED_ROW,
)
NOT_ATTACKS: dict[str, str] = {
    "tests/sync/test_hostile_sync.py::test_this_nodes_own_records_are_never_budgeted": (
        "honest path: this node's own records (its own writes, or pulled back after a "
        "restore) are exempt from the author budgets; nothing to revert"
    ),
}
