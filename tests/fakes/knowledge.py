"""A stand-in for the node's KnowledgeService write path: signs records and stores them.

``LocalKnowledge(store, signer).add`` has the signature of ``KnowledgeService.add`` (the
``write`` callback agents use) without the network: no gossip, no replication.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import trio

from memory.store import MemoryStore
from protocols.peerid import Signer
from protocols.records import MemoryRecord, new_record


@dataclass
class LocalKnowledge:
    store: MemoryStore
    signer: Signer
    calls: list[dict[str, Any]] = field(default_factory=list)
    _lock: trio.Lock = field(default_factory=trio.Lock)

    async def add(
        self,
        text: str,
        *,
        kind: str = "note",
        collection: str = "expert_knowledge",
        meta: dict[str, str | int | float | bool] | None = None,
        agent: str = "",
    ) -> MemoryRecord:
        self.calls.append(
            {"text": text, "kind": kind, "collection": collection, "meta": meta, "agent": agent}
        )
        async with self._lock:
            record = new_record(
                self.signer, collection=collection, tenant=self.store.tenant, text=text,
                kind=kind, agent=agent, created=time.time(),
                seq=await self.store.next_seq(self.signer.peer_id), meta=meta,
            )
            await self.store.put([record])
        return record
