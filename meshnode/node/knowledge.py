"""KnowledgeService: this node's side of shared memory.

It owns the memory store's write path (so an author's sequence numbers never collide),
announces new records on the network's knowledge topic, applies other nodes'
announcements, and runs memsync anti-entropy with each peer on its handshake and with a
couple of random neighbours every ``memory.sync_interval_s``. With a common Milvus server
every node already sees the same records, so replication is off and only the store is used.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from memory.errors import MemoryStoreError, ReplicationError
from memory.ingest import IngestManifest, IngestReport, ingest
from memory.replication import AnnouncementStatus, Replicator
from memory.store import MemoryStore
from meshnode.config import NodeConfig
from meshnode.errors import MeshnodeError
from meshnode.node.faults import Faults
from meshnode.node.membership import Membership
from meshnode.node.topics import SignedTopic
from meshnode.node.transport import DialError, GossipMessage, Host, Stream
from protocols.errors import Rejected
from protocols.memsync import PROTOCOL_ID as MEMSYNC_PROTOCOL
from protocols.memsync import OverBudget, WrongTenant, decode_announcements, encode_announcements
from protocols.peerid import Signer
from protocols.presence import topic
from protocols.records import TOMBSTONE, MemoryRecord, new_record, new_tombstone

log = logging.getLogger(__name__)
SYNC_WORKERS = 2
#: Neighbours synced with per sync interval (besides every new connection).
SYNC_SAMPLE = 2
STREAM_TIMEOUT_S = 10.0
#: How long a stream from a new connection waits for that connection's hello to finish.
HELLO_WAIT_S = 10.0
INGEST_MANIFEST = "ingested.json"


class KnowledgeError(MeshnodeError):
    """A memory operation the user asked for cannot be done: no such record."""

    http_status = 404


class NotAuthor(KnowledgeError):
    """A record that only its author may delete."""

    http_status = 403


class AnnouncementCodec:
    """Knowledge announcements: records signed by their author (one, or a batch of one
    author's in seq order), of this node's tenant, whose author is not over its budget (then
    the records go no further: not forwarded either)."""

    def __init__(self, tenant: str, throttled: Callable[[str], bool] = lambda _: False) -> None:
        self.tenant = tenant
        self._throttled = throttled

    def decode(self, data: bytes) -> tuple[str, tuple[MemoryRecord, ...]]:
        records = decode_announcements(data)
        for record in records:
            if record.tenant != self.tenant:
                raise WrongTenant(f"record of tenant {record.tenant!r}, not {self.tenant!r}")
        author = records[0].author
        if self._throttled(author):
            raise OverBudget(f"{author} is over its records-per-hour budget")
        return author, records

    def admit(self, records: tuple[MemoryRecord, ...]) -> None:
        pass  # applying a record twice is a no-op: replays cost nothing


@dataclass(frozen=True, slots=True)
class NewRecord:
    """What a writer gives for a new record of this node's (the rest is filled in)."""

    text: str
    kind: str = "note"
    collection: str = "expert_knowledge"
    meta: dict[str, str | int | float | bool] | None = None
    agent: str = ""


class KnowledgeService:
    def __init__(
        self,
        config: NodeConfig,
        host: Host,
        membership: Membership,
        signer: Signer,
        store: MemoryStore,
        *,
        faults: Faults | None = None,
    ) -> None:
        self.config = config
        self.host = host
        self.membership = membership
        self.signer = signer
        self.store = store
        self.replicating = not config.memory.is_server
        self.replicator = Replicator(store, tenant=config.tenant, limits=config.limits.memory(),
                                     self_id=signer.peer_id)
        budget = self.replicator.budget
        # A forged or altered record is stopped by the validator, before it is forwarded.
        self.topic = SignedTopic(
            host, topic(config.network_id, "knowledge"),
            AnnouncementCodec(config.tenant,
                              lambda author: budget.throttled(author, self.replicator.clock())),
            self_id=signer.peer_id, on_bad=membership.report_bad_message)
        self._write_lock = trio.Lock()
        self._wanted: set[str] = set()
        self._sync_send, self._sync_receive = trio.open_memory_channel[str](1024)
        self.faults = faults if faults is not None else Faults()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if not self.replicating:
            log.info("memory on a shared Milvus server: replication is off",
                     extra={"uri": self.config.memory.uri})
            task_status.started()
            return
        self.host.set_stream_handler(MEMSYNC_PROTOCOL, self._serve)
        self.membership.handshake_listeners.append(self.request_sync)
        async with trio.open_nursery() as nursery:
            # Replicated means Milvus Lite: seal bursts of records once, not every 200 rows.
            await nursery.start(self.store.run_flusher)
            await nursery.start(self.topic.run, self._on_announcement)
            nursery.start_soon(self._periodic_sync)
            for _ in range(SYNC_WORKERS):
                nursery.start_soon(self._sync_worker)
            task_status.started()

    # ---- replication -------------------------------------------------------------

    def request_sync(self, peer_id: str) -> None:
        if not self.replicating or peer_id in self._wanted:
            return
        # A full queue drops the request; the periodic sync comes round again anyway.
        with suppress(trio.WouldBlock):
            self._sync_send.send_nowait(peer_id)
            self._wanted.add(peer_id)

    async def _serve(self, stream: Stream) -> None:
        peer_id = stream.peer_id
        # Memory is for nodes of this mesh: a peer without a verified hello gets nothing.
        if not await self.membership.gate.wait(peer_id, timeout=HELLO_WAIT_S):
            log.info("memsync refused: no hello from peer", extra={"peer": peer_id})
            return
        await self.replicator.serve(peer_id, stream)

    async def _sync_worker(self) -> None:
        async for peer_id in self._sync_receive:
            self._wanted.discard(peer_id)
            # One sync failing in a way nobody listed must not stop the worker (or the node).
            with self.faults.contained("memory sync", peer=peer_id):
                await self._sync(peer_id)

    async def _sync(self, peer_id: str) -> None:
        try:
            async with self.host.open_stream(
                peer_id, MEMSYNC_PROTOCOL, timeout=STREAM_TIMEOUT_S
            ) as stream:
                result = await self.replicator.sync_with(peer_id, stream)
        except (DialError, ReplicationError) as exc:
            log.info("memory sync failed", extra={"peer": peer_id, "error": str(exc)})
            return
        if result.pulled or result.rejected:
            log.info("memory synced", extra={"peer": peer_id, "pulled": result.pulled,
                                             "rejected": result.rejected,
                                             "duration_s": round(result.duration_s, 3)})

    async def _periodic_sync(self) -> None:
        # A few random neighbours per round, not all: repair spreads epidemically, and a
        # node's cost stays the same however many connections it has.
        while True:
            await trio.sleep(self.config.memory.sync_interval_s)
            connected = sorted(self.membership.verified_connected())
            for peer_id in random.sample(connected, min(SYNC_SAMPLE, len(connected))):
                self.request_sync(peer_id)

    @property
    def announcements_rejected(self) -> int:
        return self.topic.rejected_total

    @property
    def announcements_received(self) -> int:
        return self.topic.accepted

    async def _on_announcement(self, message: GossipMessage,
                               records: tuple[MemoryRecord, ...]) -> None:
        try:
            outcome = await self.replicator.apply_announced_many(message.origin, records)
        except MemoryStoreError as exc:  # the store or its embedder failing: a later sync
            # brings the record, so only this message is lost
            self.faults.record("memory announcement", exc, expected=True, peer=message.origin)
            return
        if outcome.status is AnnouncementStatus.GAP:
            # Only authors announce, so the origin holds everything we miss; if it is not
            # a direct neighbour, any neighbour that kept up will do.
            connected = self.membership.verified_connected()
            source = message.origin if message.origin in connected else None
            if source is None and connected:
                source = random.choice(sorted(connected))
            if source is not None:
                self.request_sync(source)
        elif outcome.status is AnnouncementStatus.REJECTED:
            raise Rejected(outcome.reason)
        elif outcome.status is AnnouncementStatus.REFUSED:
            raise OverBudget(outcome.reason)

    async def _announce(self, records: Sequence[MemoryRecord]) -> None:
        """Announce this node's new records, as few messages as the size limits allow."""
        if not self.replicating:
            return
        for body in encode_announcements(records):
            # A failed announcement is not retried: peers still get it by anti-entropy.
            await self.topic.publish(body)

    # ---- writes --------------------------------------------------------------------

    async def add(
        self,
        text: str,
        *,
        kind: str = "note",
        collection: str = "expert_knowledge",
        meta: dict[str, str | int | float | bool] | None = None,
        agent: str = "",
    ) -> MemoryRecord:
        (record,) = await self.add_many([NewRecord(text, kind, collection, meta, agent)])
        return record

    async def add_many(self, items: Sequence[NewRecord]) -> list[MemoryRecord]:
        """Store new records of this node's in one batch (consecutive seqs, one embedding
        call and one insert per collection chunk) and announce them in as few messages as
        the limits allow. All or nothing: an invalid item fails the whole batch."""
        if not items:
            return []
        async with self._write_lock:
            seq = await self.store.next_seq(self.signer.peer_id)
            now = time.time()
            records = [
                new_record(self.signer, collection=item.collection, tenant=self.config.tenant,
                           text=item.text, kind=item.kind, agent=item.agent, created=now,
                           seq=seq + i, meta=item.meta)
                for i, item in enumerate(items)
            ]
            await self.store.put(records, verified=True)  # made and signed just now
        await self._announce(records)
        return records

    async def delete(self, record_id: str) -> MemoryRecord:
        async with self._write_lock:
            found = await self.store.get([record_id])
            if not found or found[0].kind == TOMBSTONE:
                raise KnowledgeError(f"no record {record_id} in this node's memory")
            if found[0].author != self.signer.peer_id:
                raise NotAuthor(
                    f"record {record_id} belongs to {found[0].author}; only its author can "
                    "delete it"
                )
            seq = await self.store.next_seq(self.signer.peer_id)
            tombstone = new_tombstone(self.signer, found[0], created=time.time(), seq=seq)
            await self.store.put([tombstone])
        await self._announce([tombstone])
        return tombstone

    async def ingest(
        self, paths: Sequence[str], *, prune: bool = False, collection: str = "expert_knowledge"
    ) -> IngestReport:
        """Chunk and store Markdown/text files; unchanged files (by content hash) are a no-op."""
        async with self._write_lock:
            manifest = await trio.to_thread.run_sync(
                IngestManifest.load, Path(self.config.home) / INGEST_MANIFEST
            )
            report, records = await ingest(
                self.store, manifest, self.signer, paths, agent="", collection=collection,
                prune=prune,
            )
        await self._announce(records)
        return report

    async def import_records(self, records: Sequence[MemoryRecord]) -> int:
        async with self._write_lock:
            return await self.store.put(records)

    # ---- views ---------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        stats = await self.store.stats()
        replicator = self.replicator
        stats["replication"] = {
            "mode": "replicated (Milvus Lite per node)" if self.replicating
            else "shared server (no replication)",
            "announcements_rejected": self.announcements_rejected,
            "announcements": self.topic.stats(),
            "peers": replicator.lag() if self.replicating else {},
            # Records refused by reason (rate, bytes: the author budgets; store: the store
            # could not take it) and the authors most refused; sync requests refused.
            "refused": dict(replicator.budget.refused + replicator.refused),
            "refused_authors": dict(replicator.budget.refused_authors.most_common(20)),
            "sync_refused": dict(replicator.serve_budget.refused),
            # Authors with records held beyond a missing one (wanted from the next sync).
            "waiting": self.store.waiting(),
        }
        return stats
