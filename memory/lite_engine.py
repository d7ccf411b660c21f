"""Milvus Lite, called in this process: no gRPC server, no pymilvus.

Milvus Lite 3 is pure Python (pyarrow storage, faiss indexes). pymilvus reached it through
a gRPC server that Milvus Lite starts on a free loopback TCP port, in this same process:
every insert and search went through protobuf twice, the node carried pymilvus, pandas
and gRPC (~45 MB of its RSS, bench/RESULTS.md "Idle footprint"), and any local user could
connect to that port and read or write the node's memory without its API token. Here the
store calls the engine the gRPC servicer calls, with the same arguments.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from memory.engine import FIELDS, JSON_FIELDS, METRIC, VECTOR, field_options
from memory.errors import BackendError, StoreUnavailable

if TYPE_CHECKING:
    from milvus_lite.db import MilvusLite
    from milvus_lite.engine.collection import Collection


class _Databases:
    """The open Milvus Lite databases of this process, one per data folder, counted.

    Milvus Lite locks its folder per open (flock), so two stores of one process on the same
    folder must share one database; the last to close releases the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, tuple[MilvusLite, int]] = {}

    def acquire(self, path: str) -> MilvusLite:
        from milvus_lite.db import MilvusLite

        with self._lock:
            db, users = self._open.get(path) or (MilvusLite(path), 0)
            self._open[path] = (db, users + 1)
            return db

    def release(self, path: str) -> None:
        with self._lock:
            db, users = self._open[path]
            if users > 1:
                self._open[path] = (db, users - 1)
                return
            del self._open[path]
        db.close()


_DATABASES = _Databases()


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its JSON fields as values: Milvus Lite hands them back as it stored
    them, objects while in memory and JSON text once flushed to a segment."""
    for name in JSON_FIELDS:
        value = row.get(name)
        if isinstance(value, str):
            # Left as text if it does not parse: the record built from it fails validation.
            with suppress(ValueError):
                row[name] = json.loads(value)
    return row


class LiteEngine:
    def __init__(self, uri: str) -> None:
        # Milvus Lite builds each new segment's HNSW index in faiss, in this process;
        # faiss's OpenMP threads then spin waiting for more work. That spinning was ~40 %
        # of a node's CPU while it took a burst of records (bench/RESULTS.md, "Writes"),
        # taken from every other node on a small machine. Passive waiting keeps the
        # parallel build; it must be set before faiss loads (an operator's value wins).
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        if not uri.endswith(".db"):
            raise StoreUnavailable(f"a Milvus Lite data file must end in .db: {uri!r}")
        self._path = os.path.abspath(uri)
        os.makedirs(os.path.dirname(self._path), exist_ok=True)
        from milvus_lite.exceptions import DataDirLockedError, MilvusLiteError

        try:
            self._db: MilvusLite | None = _DATABASES.acquire(self._path)
        except DataDirLockedError as exc:
            raise StoreUnavailable(
                f"cannot open Milvus Lite at {uri} (is another process using it?)"
            ) from exc
        except (MilvusLiteError, OSError) as exc:
            raise StoreUnavailable(f"cannot open Milvus Lite at {uri}: {exc}") from exc

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        from milvus_lite.exceptions import MilvusLiteError

        try:
            yield
        except (MilvusLiteError, ValueError, TypeError) as exc:
            # The engine reports bad rows and expressions as ValueError/TypeError too.
            raise BackendError(f"Milvus Lite at {self._path}: {what} failed: {exc}") from exc

    def _database(self) -> MilvusLite:
        if self._db is None:
            raise BackendError("the memory store is not open")
        return self._db

    def _collection(self, name: str) -> Collection:
        return self._database().get_collection(name)

    def has_collection(self, name: str) -> bool:
        with self._translated("has_collection"):
            return bool(self._database().has_collection(name))

    def create_collection(
        self, name: str, dim: int, index: tuple[str, dict[str, Any]],
        properties: dict[str, str],
    ) -> None:
        from milvus_lite.schema.types import CollectionSchema, DataType, FieldSchema

        schema = CollectionSchema(fields=[
            FieldSchema(name=n, dtype=DataType[t], **field_options(o, n, dim))
            for n, t, o in FIELDS
        ])
        index_type, build = index
        with self._translated(f"create collection {name}"):
            collection = self._database().create_collection(name, schema, properties=properties)
            collection.create_index(
                VECTOR, {"index_type": index_type, "metric_type": METRIC, "params": build})

    def properties(self, name: str) -> dict[str, str]:
        with self._translated("describe_collection"):
            return {str(k): str(v) for k, v in self._collection(name).schema.properties.items()}

    def load(self, name: str) -> None:
        with self._translated("load_collection"):
            self._collection(name).load()

    def query(
        self, name: str, expr: str, fields: Sequence[str], limit: int | None
    ) -> list[dict[str, Any]]:
        with self._translated(f"query {name}"):
            rows = self._collection(name).query(expr, output_fields=list(fields), limit=limit)
            return [_decoded(row) for row in rows]

    def count(self, name: str, expr: str) -> int:
        with self._translated(f"count {name}"):
            return len(self._collection(name).query(expr, output_fields=["id"]))

    def insert(self, name: str, rows: list[dict[str, Any]]) -> None:
        with self._translated(f"insert into {name}"):
            self._collection(name).insert(rows)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        with self._translated(f"delete from {name}"):
            self._collection(name).delete(list(ids))

    def search(
        self, name: str, vector: list[float], expr: str, k: int, fields: Sequence[str],
        params: dict[str, Any],
    ) -> list[tuple[dict[str, Any], float]]:
        with self._translated(f"search {name}"):
            hits = self._collection(name).search(
                [vector], top_k=k, metric_type=METRIC, expr=expr, output_fields=list(fields),
                anns_field=VECTOR, search_params=params,
            )
            # The primary key comes beside the entity, as pymilvus gives it.
            return [(_decoded({**hit["entity"], "id": hit["id"]}), float(hit["distance"]))
                    for hit in hits[0]]

    def flush(self, name: str) -> None:
        with self._translated(f"flush {name}"):
            self._collection(name).flush()

    def index_state(self, name: str) -> tuple[str, int]:
        # Milvus Lite builds segment indexes as it flushes and searches the rest exactly;
        # it reports nothing pending (as its gRPC servicer did).
        with self._translated("describe_index"):
            info = self._collection(name).get_index_info(VECTOR) or {}
            return str(info.get("index_type", "?")), 0

    def close(self) -> None:
        if self._db is not None:
            self._db = None
            _DATABASES.release(self._path)
