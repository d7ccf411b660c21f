"""The blocking side of the memory store: one pymilvus ``MilvusClient`` and its collections.

Everything here runs in a worker thread (the store calls it through ``trio.to_thread``).
Every call to Milvus carries a timeout, and every pymilvus or gRPC exception leaves this
module translated into a :mod:`memory.errors` class.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from memory.errors import BackendError, EmbedderMismatch, StoreUnavailable
from memory.uris import is_server_uri, redact
from protocols.errors import ProtocolError
from protocols.records import (
    COLLECTIONS,
    ID_LEN,
    MAX_KIND_LEN,
    TOMBSTONE,
    MemoryRecord,
    verify_record,
)

if TYPE_CHECKING:
    from pymilvus import MilvusClient

# pymilvus (which imports pandas and gRPC: ~0.5 s of CPU and ~100 MB) is imported by the
# first call that needs it, in the worker thread that opens the store, not by importing
# this module: a node serves its peers while its memory opens (see MemoryStore.opening).

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
_UNAVAILABLE = {"UNAVAILABLE", "DEADLINE_EXCEEDED"}  # gRPC status code names
#: Terms of one "or" chain in a filter expression.
_OR_CHUNK = 64


def literal(value: str) -> str:
    """A Milvus string literal for a value we validated to hold no quotes or backslashes."""
    if '"' in value or "\\" in value:
        raise BackendError(f"refusing to put {value!r} into a filter expression")
    return f'"{value}"'


def _in(field_name: str, values: Sequence[str]) -> str:
    return f"{field_name} in [{', '.join(literal(v) for v in values)}]"


#: Milvus Lite's server runs in this process: pymilvus' keepalive pings (every 10 s, even
#: with no call in flight) only earn a "too_many_pings" GOAWAY from it and a reconnect.
_LITE_GRPC = {"grpc.keepalive_time_ms": 2**31 - 1, "grpc.keepalive_permit_without_calls": False}


def _code_name(code: Any) -> str:
    """The name of a gRPC status code (``grpc.StatusCode.UNAVAILABLE``: "UNAVAILABLE")."""
    return str(getattr(code, "name", code))


class _LiteServers:
    """Reference counts of the in-process Milvus Lite servers, one per data file.

    pymilvus starts a Lite server per path on first use and keeps it until exit; releasing
    it when the last store on that path closes frees the file lock for other processes and
    makes a reopen read the data back from disk.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[str, int] = {}

    def acquire(self, path: str) -> None:
        with self._lock:
            self._users[path] = self._users.get(path, 0) + 1

    def release(self, path: str) -> None:
        from milvus_lite.server_manager import server_manager_instance

        with self._lock:
            self._users[path] -= 1
            if self._users[path]:
                return
            del self._users[path]
        server_manager_instance.release_server(path)


_LITE = _LiteServers()


@dataclass
class Backend:
    uri: str
    tenant: str
    embedder_name: str
    dim: int
    token: str | None = None
    index_type: str = "HNSW"
    timeout: float = 30.0
    _client: MilvusClient | None = field(default=None, init=False, repr=False)
    _lite_path: str | None = field(default=None, init=False, repr=False)

    @property
    def is_lite(self) -> bool:
        return not is_server_uri(self.uri)

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        import grpc  # type: ignore[import-untyped]
        from pymilvus import MilvusException

        where = redact(self.uri)
        try:
            yield
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            cls = StoreUnavailable if _code_name(code) in _UNAVAILABLE else BackendError
            raise cls(f"Milvus at {where}: {what} failed: {code}") from exc
        except MilvusException as exc:
            unavailable = (_code_name(exc.code) in _UNAVAILABLE
                           or "unavailable" in exc.message.lower())
            cls = StoreUnavailable if unavailable else BackendError
            raise cls(f"Milvus at {where}: {what} failed: {exc.message or exc}") from exc

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._translated(what):
            return fn(*args, timeout=self.timeout, **kwargs)

    # -- lifecycle ------------------------------------------------------------------------

    def open(self) -> None:
        if self.index_type not in INDEXES:
            raise BackendError(f"index type {self.index_type!r} is not one of {sorted(INDEXES)}")
        self._client = self._connect()
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

    def _connect(self) -> MilvusClient:
        from pymilvus import MilvusClient, MilvusException

        uri = self.uri
        if self.is_lite:
            # Milvus Lite builds each new segment's HNSW index in faiss, in this process;
            # faiss's OpenMP threads then spin waiting for more work. That spinning was ~40 %
            # of a node's CPU while it took a burst of records (bench/RESULTS.md, "Writes"),
            # taken from every other node on a small machine. Passive waiting keeps the
            # parallel build; it must be set before faiss loads (an operator's value wins).
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            if not uri.endswith(".db"):
                raise StoreUnavailable(f"a Milvus Lite data file must end in .db: {uri!r}")
            uri = os.path.abspath(uri)
            os.makedirs(os.path.dirname(uri), exist_ok=True)
            _LITE.acquire(uri)
            self._lite_path = uri
        try:
            return MilvusClient(
                uri=uri, token=self.token or "", timeout=self.timeout, dedicated=True,
                grpc_options=_LITE_GRPC if self.is_lite else {},
            )
        except MilvusException as exc:
            self._release_lite()
            hint = " (is another process using it?)" if self.is_lite else ""
            raise StoreUnavailable(
                f"cannot open Milvus at {redact(self.uri)}{hint}: {exc.message or 'unreachable'}"
            ) from exc

    def _release_lite(self) -> None:
        if self._lite_path is not None:
            _LITE.release(self._lite_path)
            self._lite_path = None

    def close(self) -> None:
        client, self._client = self._client, None
        try:
            if client is not None:
                client.close()
        finally:
            self._release_lite()

    def _open_collection(self, name: str) -> None:
        if not self._call("has_collection", self._client_().has_collection, name):
            try:
                self._create_collection(name)
            except BackendError:
                # Another node sharing the server may have created it a moment ago.
                if not self._call("has_collection", self._client_().has_collection, name):
                    raise
        desc = self._call("describe_collection", self._client_().describe_collection, name)
        props = desc.get("properties") or {}
        if props.get(_PROP_SCHEMA) != SCHEMA_VERSION or _PROP_EMBEDDER not in props:
            raise BackendError(
                f"collection {name!r} at {redact(self.uri)} was not created by this version "
                f"of meshnode (schema {props.get(_PROP_SCHEMA)!r}, expected {SCHEMA_VERSION!r})"
            )
        stored_name, stored_dim = props[_PROP_EMBEDDER], int(props.get(_PROP_DIM, 0))
        if (stored_name, stored_dim) != (self.embedder_name, self.dim):
            raise EmbedderMismatch(name, stored_name, stored_dim, self.embedder_name, self.dim)
        self._call("load_collection", self._client_().load_collection, name)

    def _client_(self) -> MilvusClient:
        if self._client is None:
            raise BackendError("the memory store is not open")
        return self._client

    def _create_collection(self, name: str) -> None:
        from pymilvus import DataType

        client = self._client_()
        schema = client.create_schema(
            auto_id=False,
            enable_dynamic_field=False,
            description=f"meshnode {name}; embedder {self.embedder_name} dim {self.dim}",
        )
        # VARCHAR lengths are in bytes: 4 per character covers any UTF-8 text we accept.
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=ID_LEN)
        schema.add_field("tenant", DataType.VARCHAR, max_length=256, is_partition_key=True)
        schema.add_field("text", DataType.VARCHAR, max_length=65_535)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("kind", DataType.VARCHAR, max_length=MAX_KIND_LEN)
        schema.add_field("author", DataType.VARCHAR, max_length=64)
        schema.add_field("agent", DataType.VARCHAR, max_length=256)
        schema.add_field("created", DataType.DOUBLE)
        schema.add_field("seq", DataType.INT64)
        schema.add_field("meta", DataType.JSON)
        schema.add_field("signature", DataType.VARCHAR, max_length=128)
        # Milvus Lite cannot filter on JSON paths with "in", so tombstone targets get a column.
        schema.add_field("deletes", DataType.VARCHAR, max_length=ID_LEN)
        build, _ = INDEXES[self.index_type]
        index = client.prepare_index_params()
        index.add_index("vector", index_type=self.index_type, metric_type="COSINE", params=build)
        self._call(
            f"create collection {name}",
            client.create_collection,
            name,
            schema=schema,
            index_params=index,
            # Session: a node reads its own writes at once, without Strong's ~200 ms wait.
            consistency_level="Session",
            properties={
                _PROP_EMBEDDER: self.embedder_name,
                _PROP_DIM: str(self.dim),
                _PROP_SCHEMA: SCHEMA_VERSION,
            },
        )

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
        window = {} if limit is None else {"limit": limit}
        return self._call(
            f"query {collection}", self._client_().query, collection,
            filter=self._scope(*conditions), output_fields=list(fields), **window,
        )

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
        # Not upsert: Milvus 2.3 upserts rows into the wrong partition when the collection
        # has a partition key, and partition-key filters then never find them again.
        self._call(f"insert into {collection}", self._client_().insert, collection, rows)

    def delete(self, collection: str, ids: Sequence[str]) -> None:
        self._call(f"delete from {collection}", self._client_().delete, collection, ids=list(ids))

    def search(
        self, collection: str, vector: list[float], k: int, kind: str | None
    ) -> list[tuple[MemoryRecord, float]]:
        conditions = [f"kind != {literal(TOMBSTONE)}"]
        if kind is not None:
            conditions.append(f"kind == {literal(kind)}")
        params = dict(INDEXES[self.index_type][1])
        if "ef" in params:  # HNSW needs a search width of at least k
            params["ef"] = max(params["ef"], k)
        hits = self._call(
            f"search {collection}", self._client_().search, collection, data=[vector],
            filter=self._scope(*conditions), limit=k, output_fields=_SCALARS,
            search_params={"metric_type": "COSINE", "params": params},
        )
        out = []
        for hit in hits[0]:
            record = self._to_record(collection, hit["entity"])
            if record is not None:
                out.append((record, float(hit["distance"])))
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
        rows = self.query(
            collection, f"kind != {literal(TOMBSTONE)}", fields=("count(*)",), limit=None
        )
        return int(rows[0]["count(*)"]) if rows else 0

    def flush(self, collection: str) -> None:
        self._call(f"flush {collection}", self._client_().flush, collection)

    def index_state(self, collection: str) -> tuple[str, int]:
        """The vector index type, and how many rows still wait for it (searched slower)."""
        info = self._call("describe_index", self._client_().describe_index, collection, "vector")
        return str(info.get("index_type", "?")), int(info.get("pending_index_rows", 0))
