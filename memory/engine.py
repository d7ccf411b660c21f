"""What the memory store needs of a Milvus, and the collection layout both kinds share.

Two engines implement :class:`Engine`: :class:`memory.lite_engine.LiteEngine` calls Milvus
Lite's own engine in this process, and :class:`memory.server_engine.ServerEngine` talks to
a Milvus server through pymilvus. Each translates its library's errors into
:mod:`memory.errors` and runs in a worker thread (the store calls it through
``trio.to_thread``). :func:`open_engine` picks one by URI and imports only its library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from memory.uris import is_server_uri
from protocols.records import ID_LEN, MAX_KIND_LEN

#: The fields of every collection: name, Milvus data type name, field options (the same
#: keywords in pymilvus and in Milvus Lite). VARCHAR lengths are in bytes: 4 per character
#: covers any UTF-8 text we accept. ``vector`` gets its ``dim`` from the embedder.
FIELDS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("id", "VARCHAR", {"is_primary": True, "max_length": ID_LEN}),
    ("tenant", "VARCHAR", {"max_length": 256, "is_partition_key": True}),
    ("text", "VARCHAR", {"max_length": 65_535}),
    ("vector", "FLOAT_VECTOR", {}),
    ("kind", "VARCHAR", {"max_length": MAX_KIND_LEN}),
    ("author", "VARCHAR", {"max_length": 64}),
    ("agent", "VARCHAR", {"max_length": 256}),
    ("created", "DOUBLE", {}),
    ("seq", "INT64", {}),
    ("meta", "JSON", {}),
    ("signature", "VARCHAR", {"max_length": 128}),
    # Milvus Lite cannot filter on JSON paths with "in", so tombstone targets get a column.
    ("deletes", "VARCHAR", {"max_length": ID_LEN}),
)
VECTOR = "vector"
JSON_FIELDS = tuple(name for name, kind, _ in FIELDS if kind == "JSON")
METRIC = "COSINE"


def field_options(options: dict[str, Any], name: str, dim: int) -> dict[str, Any]:
    return {**options, "dim": dim} if name == VECTOR else options


class Engine(Protocol):
    """One Milvus database, as the store uses it. Every method blocks."""

    def has_collection(self, name: str) -> bool: ...

    def create_collection(
        self, name: str, dim: int, index: tuple[str, dict[str, Any]],
        properties: dict[str, str],
    ) -> None:
        """Create ``name`` with :data:`FIELDS`, a cosine ``index`` (type, build params) on
        the vector and ``properties``; raise BackendError if it exists."""

    def properties(self, name: str) -> dict[str, str]: ...

    def load(self, name: str) -> None: ...

    def query(
        self, name: str, expr: str, fields: Sequence[str], limit: int | None
    ) -> list[dict[str, Any]]: ...

    def count(self, name: str, expr: str) -> int: ...

    def insert(self, name: str, rows: list[dict[str, Any]]) -> None: ...

    def delete(self, name: str, ids: Sequence[str]) -> None: ...

    def search(
        self, name: str, vector: list[float], expr: str, k: int, fields: Sequence[str],
        params: dict[str, Any],
    ) -> list[tuple[dict[str, Any], float]]:
        """The ``k`` rows nearest ``vector`` among those matching ``expr``, each with its
        cosine similarity."""

    def flush(self, name: str) -> None: ...

    def index_state(self, name: str) -> tuple[str, int]:
        """The vector index type, and how many rows still wait for it."""

    def close(self) -> None: ...


def open_engine(uri: str, token: str | None, timeout: float) -> Engine:
    """The engine for ``uri``: a Milvus server, or a Milvus Lite data folder."""
    if is_server_uri(uri):
        from memory.server_engine import ServerEngine

        return ServerEngine(uri, token, timeout)
    from memory.lite_engine import LiteEngine

    return LiteEngine(uri)
