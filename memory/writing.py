"""The blocking half of a write: check, skip what is held, apply tombstones, embed, insert.

:class:`memory.store.MemoryStore` runs :meth:`Writer.put` in a worker thread, one write at
a time, and accounts for the result in its marks even when a later chunk failed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from memory.backend import Backend
from memory.embedders import Embedder
from memory.errors import EmbedderError, InvalidRecord
from protocols.errors import ProtocolError
from protocols.records import MemoryRecord, verify_record

#: Records embedded and written per Milvus call, which bounds one call's size.
PUT_CHUNK = 512


@dataclass(slots=True)
class PutResult:
    stored: list[MemoryRecord]
    by_collection: Counter[str]
    #: Records now held or known deleted (stored, already held, or killed by a tombstone).
    accounted: list[MemoryRecord]


@dataclass(frozen=True, slots=True)
class Writer:
    backend: Backend
    embedder: Embedder
    tenant: str

    def check(self, r: MemoryRecord, verified: bool) -> None:
        if not verified:
            try:
                verify_record(r)
            except ProtocolError as exc:
                raise InvalidRecord(f"record {r.id!r} from {r.author!r}: {exc}") from exc
        if r.tenant != self.tenant:
            raise InvalidRecord(
                f"record {r.id} belongs to tenant {r.tenant!r}, not {self.tenant!r}"
            )

    def put(
        self, records: list[MemoryRecord], result: PutResult, verified: bool
    ) -> None:
        for r in records:
            self.check(r, verified)
        groups: dict[str, list[MemoryRecord]] = defaultdict(list)
        for r in records:
            groups[r.collection].append(r)
        for name, group in groups.items():
            for start in range(0, len(group), PUT_CHUNK):
                chunk = group[start : start + PUT_CHUNK]
                stored = self._put_chunk(name, chunk)
                result.stored.extend(stored)
                result.accounted.extend(chunk)
                result.by_collection[name] += len(stored)

    def _put_chunk(self, name: str, chunk: list[MemoryRecord]) -> list[MemoryRecord]:
        targets = [r.deletes for r in chunk if r.deletes is not None]
        rows = self.backend.lookup(name, [r.id for r in chunk] + targets)
        held = {row["id"]: row["author"] for row in rows}
        fresh = [r for r in chunk if r.id not in held]
        # (target, author) pairs that delete a record: tombstones stored or in this chunk.
        kills = {(row["deletes"], row["author"]) for row in rows if row["deletes"]}
        kills |= {(t.deletes, t.author) for t in fresh if t.deletes is not None}
        keep = [r for r in fresh if (r.id, r.author) not in kills]
        doomed = [target for target, author in kills if held.get(target) == author]
        # Delete before storing the tombstone: if we stop in between, the tombstone is
        # missing and sync brings it again, rather than the target surviving forever.
        if doomed:
            self.backend.delete(name, doomed)
        if keep:
            self.backend.insert(name, self._rows(keep))
        return keep

    def _rows(self, records: list[MemoryRecord]) -> list[dict[str, Any]]:
        texts = [r.text for r in records if not r.is_tombstone]
        vectors = iter(self.embed(texts) if texts else [])
        # Tombstones are never searched, but the vector field is mandatory; any unit vector.
        unit = [1.0] + [0.0] * (self.embedder.dim - 1)
        return [
            self.backend.to_row(r, unit if r.is_tombstone else next(vectors)) for r in records
        ]

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors = self.embedder.embed(texts)
        if len(vectors) != len(texts) or any(len(v) != self.embedder.dim for v in vectors):
            raise EmbedderError(
                f"embedder {self.embedder.name} returned vectors of the wrong number or size"
            )
        return vectors
