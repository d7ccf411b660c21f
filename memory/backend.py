"""The blocking side of the memory store: filters, rows and records over one :class:`Engine`.

Everything here runs in a worker thread (the store calls it through ``trio.to_thread``).
The engine (:mod:`memory.engine`: Milvus Lite in this process, or a Milvus server through
pymilvus) translates its library's exceptions into :mod:`memory.errors` classes; a node
whose memory is Milvus Lite never imports pymilvus.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from memory.engine import Engine, open_engine
from memory.errors import BackendError, EmbedderMismatch
from memory.uris import is_server_uri, redact
from protocols.errors import ProtocolError
from protocols.records import (
    COLLECTIONS,
    ID_LEN,
    TOMBSTONE,
    MemoryRecord,
    verify_record,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA_VERSION = "1"
_PROP_EMBEDDER = "meshnode.embedder"
_PROP_DIM = "meshnode.dim"
_PROP_SCHEMA = "meshnode.schema"
#: Index build and search parameters per index type (see bench/RESULTS.md for the choice).
INDEXES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "HNSW": ({"M": 16, "efConstruction": 200}, {"ef": 256}),
    "FLAT": ({}, {}),
    "AUTOINDEX": ({}, {}),
}
#: Milvus refuses query/search windows above this many rows.
MAX_WINDOW = 16_384
_SCALARS = ["id", "tenant", "text", "kind", "author", "agent", "created", "seq", "meta",
            "signature"]
#: Terms of one "or" chain in a filter expression.
_OR_CHUNK = 64


def literal(value: str) -> str:
    """A Milvus string literal for a value we validated to hold no quotes or backslashes."""
    if '"' in value or "\\" in value:
        raise BackendError(f"refusing to put {value!r} into a filter expression")
    return f'"{value}"'


def _in(field_name: str, values: Sequence[str]) -> str:
    return f"{field_name} in [{', '.join(literal(v) for v in values)}]"


@dataclass
class Backend:
    uri: str
    tenant: str
    embedder_name: str
    dim: int
    token: str | None = None
    index_type: str = "HNSW"
    timeout: float = 30.0
    _engine: Engine | None = field(default=None, init=False, repr=False)

    @property
    def is_lite(self) -> bool:
        return not is_server_uri(self.uri)

    # -- lifecycle ------------------------------------------------------------------------

    def open(self) -> None:
        if self.index_type not in INDEXES:
            raise BackendError(f"index type {self.index_type!r} is not one of {sorted(INDEXES)}")
        self._engine = open_engine(self.uri, self.token, self.timeout)
        try:
            self.each_collection(self._open_collection)
        except BaseException:
            self.close()
            raise

    def each_collection(self, fn: Callable[[str], T]) -> list[T]:
        """``fn`` of every collection, side by side: a Milvus server takes seconds to load
        a new collection or to flush one, mostly waiting."""
        with ThreadPoolExecutor(len(COLLECTIONS), thread_name_prefix="milvus") as pool:
            return list(pool.map(fn, COLLECTIONS))

    def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()

    def _open_collection(self, name: str) -> None:
        engine = self.engine
        if not engine.has_collection(name):
            try:
                engine.create_collection(
                    name, self.dim, (self.index_type, INDEXES[self.index_type][0]),
                    {_PROP_EMBEDDER: self.embedder_name, _PROP_DIM: str(self.dim),
                     _PROP_SCHEMA: SCHEMA_VERSION},
                )
            except BackendError:
                # Another node sharing the server may have created it a moment ago.
                if not engine.has_collection(name):
                    raise
        props = engine.properties(name)
        if props.get(_PROP_SCHEMA) != SCHEMA_VERSION or _PROP_EMBEDDER not in props:
            raise BackendError(
                f"collection {name!r} at {redact(self.uri)} was not created by this version "
                f"of meshnode (schema {props.get(_PROP_SCHEMA)!r}, expected {SCHEMA_VERSION!r})"
            )
        stored_name, stored_dim = props[_PROP_EMBEDDER], int(props.get(_PROP_DIM, 0))
        if (stored_name, stored_dim) != (self.embedder_name, self.dim):
            raise EmbedderMismatch(name, stored_name, stored_dim, self.embedder_name, self.dim)
        engine.load(name)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise BackendError("the memory store is not open")
        return self._engine

    # -- rows -----------------------------------------------------------------------------

    def _scope(self, *conditions: str) -> str:
        return " and ".join((f"tenant == {literal(self.tenant)}", *conditions))

    def to_row(self, r: MemoryRecord, vector: list[float]) -> dict[str, Any]:
        return {
            "id": r.id, "tenant": r.tenant, "text": r.text, "vector": vector, "kind": r.kind,
            "author": r.author, "agent": r.agent, "created": r.created, "seq": r.seq,
            "meta": r.meta, "signature": r.signature.hex(), "deletes": r.deletes or "",
        }

    def _to_record(self, collection: str, row: dict[str, Any]) -> MemoryRecord | None:
        try:
            record = MemoryRecord(
                id=row["id"], collection=collection, tenant=row["tenant"], text=row["text"],
                kind=row["kind"], author=row["author"], agent=row["agent"],
                created=float(row["created"]), seq=int(row["seq"]), meta=dict(row["meta"]),
                signature=bytes.fromhex(row["signature"]),
            )
            verify_record(record)
        except (ProtocolError, KeyError, TypeError, ValueError) as exc:
            # Anyone who can write to a shared server could plant rows; never pass them on.
            log.warning("ignoring invalid row %r in %s: %s", row.get("id"), collection, exc)
            return None
        return record

    def _records(self, collection: str, rows: Sequence[dict[str, Any]]) -> list[MemoryRecord]:
        records = (self._to_record(collection, row) for row in rows)
        return [r for r in records if r is not None]

    def query(
        self, collection: str, *conditions: str, fields: Sequence[str], limit: int | None
    ) -> list[dict[str, Any]]:
        return self.engine.query(collection, self._scope(*conditions), fields, limit)

    def lookup(self, collection: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        """(id, author, deletes) of the rows with one of ``ids`` and of the tombstones of
        any of them: everything a write needs to know, in one query."""
        condition = f"({_in('id', ids)} or {_in('deletes', ids)})"
        return self.query(
            collection, condition, fields=("id", "author", "deletes"), limit=MAX_WINDOW
        )

    def get(self, collection: str, ids: Sequence[str]) -> list[MemoryRecord]:
        rows = self.query(collection, _in("id", ids), fields=_SCALARS, limit=len(ids))
        return self._records(collection, rows)

    def at_seqs(self, collection: str, pairs: Sequence[tuple[str, int]]) -> list[MemoryRecord]:
        """The valid records with one of the (author, seq) ``pairs``."""
        out: list[MemoryRecord] = []
        for i in range(0, len(pairs), _OR_CHUNK):
            terms = " or ".join(
                f"(author == {literal(a)} and seq == {int(q)})" for a, q in pairs[i : i + _OR_CHUNK]
            )
            rows = self.query(collection, f"({terms})", fields=_SCALARS, limit=MAX_WINDOW)
            out += self._records(collection, rows)
        return out

    def freeing(self, collection: str, author: str, seqs: Sequence[int]) -> list[MemoryRecord]:
        """``author``'s valid tombstones that free one of ``seqs``."""
        out: list[MemoryRecord] = []
        for i in range(0, len(seqs), _OR_CHUNK):
            # Milvus Lite cannot filter a JSON path with "in": a chain of "or" instead.
            terms = " or ".join(f'meta["frees"] == {int(q)}' for q in seqs[i : i + _OR_CHUNK])
            cond = f"author == {literal(author)} and kind == {literal(TOMBSTONE)} and ({terms})"
            rows = self.query(collection, cond, fields=_SCALARS, limit=MAX_WINDOW)
            out += self._records(collection, rows)
        return out

    def by_author(
        self, collection: str, author: str, lo: int, hi: int
    ) -> tuple[list[MemoryRecord], bool]:
        """``author``'s records with ``lo < seq <= hi``, and whether Milvus cut them short."""
        cond = f"author == {literal(author)} and seq > {lo} and seq <= {hi}"
        rows = self.query(collection, cond, fields=_SCALARS, limit=MAX_WINDOW)
        return self._records(collection, rows), len(rows) >= MAX_WINDOW

    def records_between(
        self, author: str, low: int, high: int, limit: int
    ) -> list[MemoryRecord]:
        """Up to ``limit`` of ``author``'s valid records with ``low < seq <= high``, in all
        collections, by (seq, id): the lowest seqs.

        Seq windows: every record up to a window's top is then in hand, so the first
        ``limit`` by seq are exact despite gaps. Empty windows double (a gap up to 2^63
        costs ~60 queries) and a window Milvus truncates is halved and asked again.
        """
        out: list[MemoryRecord] = []
        window = max(limit, 1)
        while len(out) < limit and low < high:
            top = min(low + window, high)
            found = [self.by_author(name, author, low, top) for name in COLLECTIONS]
            if any(cut for _, cut in found) and window > 1:
                window //= 2
                continue
            out += [r for records, _ in found for r in records]
            low, window = top, window * 2
        # Two nodes racing to insert one record into a shared server can leave two rows.
        unique = sorted({r.id: r for r in out}.values(), key=lambda r: (r.seq, r.id))
        return unique[:limit]

    def insert(self, collection: str, rows: list[dict[str, Any]]) -> None:
        self.engine.insert(collection, rows)

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        self.engine.delete(collection, ids)

    def search(
        self, collection: str, vector: list[float], k: int, kind: str | None
    ) -> list[tuple[MemoryRecord, float]]:
        conditions = [f"kind != {literal(TOMBSTONE)}"]
        if kind is not None:
            conditions.append(f"kind == {literal(kind)}")
        params = dict(INDEXES[self.index_type][1])
        if "ef" in params:  # HNSW needs a search width of at least k
            params["ef"] = max(params["ef"], k)
        hits = self.engine.search(
            collection, vector, self._scope(*conditions), k, _SCALARS, params)
        out = []
        for row, similarity in hits:
            record = self._to_record(collection, row)
            if record is not None:
                out.append((record, similarity))
        return out

    def scan(
        self, collection: str, fields: Sequence[str], prefix: str = "", *, where: str = ""
    ) -> Iterator[dict[str, Any]]:
        """Every row of our tenant in ``collection`` (matching ``where``, if given): for
        counts and marks.

        Ids are uniform hex, so a window that comes back full is split by the next hex
        digit of the id: bounded queries, no server-side iterator state (which Milvus Lite
        only half supports).
        """
        condition = [f"id like {literal(prefix + '%')}"] if prefix else []
        condition += [where] if where else []
        rows = self.query(collection, *condition, fields=("id", *fields), limit=MAX_WINDOW)
        if len(rows) < MAX_WINDOW or len(prefix) == ID_LEN:
            yield from rows
            return
        for digit in "0123456789abcdef":
            yield from self.scan(collection, fields, prefix + digit, where=where)

    def count(self, collection: str) -> int:
        return self.engine.count(collection, self._scope(f"kind != {literal(TOMBSTONE)}"))

    def flush(self, collection: str) -> None:
        self.engine.flush(collection)

    def index_state(self, collection: str) -> tuple[str, int]:
        """The vector index type, and how many rows still wait for it (searched slower)."""
        return self.engine.index_state(collection)
