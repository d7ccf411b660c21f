"""KnowledgeService: this node's side of shared memory.

It owns the memory store's write path (so an author's sequence numbers never collide),
announces new records on the network's knowledge topic, applies other nodes'
announcements, and runs memsync anti-entropy with peers on every handshake and every
``memory.sync_interval_s``. With a common Milvus server every node already sees the same
records, so replication is off and only the store is used.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import trio
from libp2p.peer.id import ID

from memory.ingest import IngestManifest, IngestReport, ingest
from memory.replication import AnnouncementStatus, ReplicationError, Replicator
from memory.store import MemoryStore
from meshnode.config import NodeConfig
from meshnode.errors import MeshnodeError
from meshnode.node.host import DialError, MeshHost
from meshnode.node.membership import Membership
from meshnode.node.streams import ByteStream
from protocols.errors import ProtocolError
from protocols.memsync import PROTOCOL_ID as MEMSYNC_PROTOCOL
from protocols.memsync import decode_announcement, encode_announcement
from protocols.peerid import Signer
from protocols.presence import topic
from protocols.records import TOMBSTONE, MemoryRecord, new_record, new_tombstone

log = logging.getLogger(__name__)
SYNC_WORKERS = 2
STREAM_TIMEOUT_S = 10.0
#: How long a stream from a new connection waits for that connection's hello to finish.
HELLO_WAIT_S = 10.0
INGEST_MANIFEST = "ingested.json"


class KnowledgeError(MeshnodeError):
    """A memory operation the user asked for cannot be done (not found, not yours, ...)."""


class KnowledgeService:
    def __init__(
        self,
        config: NodeConfig,
        host: MeshHost,
        membership: Membership,
        signer: Signer,
        store: MemoryStore,
    ) -> None:
        self.config = config
        self.host = host
        self.membership = membership
        self.signer = signer
        self.store = store
        self.replicating = not config.memory.is_server
        self.replicator = Replicator(store, tenant=config.tenant)
        self._topic = topic(config.network_id, "knowledge")
        self._write_lock = trio.Lock()
        self._wanted: set[str] = set()
        self._sync_send, self._sync_receive = trio.open_memory_channel[str](1024)
        self.announcements_rejected = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if not self.replicating:
            log.info("memory on a shared Milvus server: replication is off",
                     extra={"uri": self.config.memory.uri})
            task_status.started()
            return
        self.host.set_stream_handler(MEMSYNC_PROTOCOL, self._serve)
        self.host.set_topic_validator(self._topic, self._valid_announcement)
        subscription = await self.host.subscribe(self._topic)
        self.membership.handshake_listeners.append(self.request_sync)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._listen, subscription)
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

    async def _serve(self, stream: ByteStream) -> None:
        peer_id = getattr(stream, "peer_id", "?")
        # Memory is for nodes of this mesh: a peer without a verified hello gets nothing.
        if not await self.membership.gate.wait(peer_id, timeout=HELLO_WAIT_S):
            log.info("memsync refused: no hello from peer", extra={"peer": peer_id})
            return
        await self.replicator.serve(peer_id, stream)

    async def _sync_worker(self) -> None:
        async for peer_id in self._sync_receive:
            self._wanted.discard(peer_id)
            try:
                async with self.host.open_stream(
                    peer_id, MEMSYNC_PROTOCOL, timeout=STREAM_TIMEOUT_S
                ) as stream:
                    result = await self.replicator.sync_with(peer_id, stream)
            except (DialError, ReplicationError) as exc:
                log.info("memory sync failed", extra={"peer": peer_id, "error": str(exc)})
                continue
            if result.pulled or result.rejected:
                log.info("memory synced", extra={"peer": peer_id, "pulled": result.pulled,
                                                 "rejected": result.rejected,
                                                 "duration_s": round(result.duration_s, 3)})

    async def _periodic_sync(self) -> None:
        while True:
            await trio.sleep(self.config.memory.sync_interval_s)
            for peer_id in self.membership.verified_connected():
                self.request_sync(peer_id)

    def _valid_announcement(self, forwarder: Any, message: Any) -> bool:
        # Runs before GossipSub forwards a message: a forged or altered record goes no further.
        try:
            record = decode_announcement(message.data)
        except ProtocolError as exc:
            self.announcements_rejected += 1
            log.info("announcement rejected", extra={"peer": str(forwarder), "reason": str(exc)})
            self.membership.report_bad_message(str(forwarder), exc)
            return False
        return record.tenant == self.config.tenant

    async def _listen(self, subscription: Any) -> None:
        while True:
            message = await subscription.get()
            sender = ID(message.from_id).to_base58()
            if sender == self.signer.peer_id:
                continue
            outcome = await self.replicator.on_announcement(sender, message.data)
            if outcome.status is AnnouncementStatus.GAP:
                # Only authors announce, so the sender holds everything we miss; if it is not
                # a direct neighbour, any neighbour that kept up will do.
                connected = self.membership.verified_connected()
                source = sender if sender in connected else None
                if source is None and connected:
                    source = random.choice(sorted(connected))
                if source is not None:
                    self.request_sync(source)
            elif outcome.status is AnnouncementStatus.REJECTED:
                self.announcements_rejected += 1

    async def _announce(self, records: Sequence[MemoryRecord]) -> None:
        if not self.replicating:
            return
        for record in records:
            try:
                await self.host.publish(self._topic, encode_announcement(record))
            except Exception as exc:  # peers still get it by anti-entropy
                log.warning("announcement failed", extra={"id": record.id, "error": str(exc)})

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
        async with self._write_lock:
            seq = await self.store.next_seq(self.signer.peer_id)
            record = new_record(
                self.signer, collection=collection, tenant=self.config.tenant, text=text,
                kind=kind, agent=agent, created=time.time(), seq=seq, meta=meta,
            )
            await self.store.put([record])
        await self._announce([record])
        return record

    async def delete(self, record_id: str) -> MemoryRecord:
        async with self._write_lock:
            found = await self.store.get([record_id])
            if not found or found[0].kind == TOMBSTONE:
                raise KnowledgeError(f"no record {record_id} in this node's memory")
            if found[0].author != self.signer.peer_id:
                raise KnowledgeError(
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
        stats["replication"] = {
            "mode": "replicated (Milvus Lite per node)" if self.replicating
            else "shared server (no replication)",
            "announcements_rejected": self.announcements_rejected,
            "peers": self.replicator.lag() if self.replicating else {},
        }
        return stats
