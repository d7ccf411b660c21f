"""A Milvus server, through one pymilvus ``MilvusClient``.

Every call carries a timeout, and every pymilvus or gRPC exception leaves this module
translated into a :mod:`memory.errors` class. pymilvus (which imports pandas and gRPC:
~0.5 s of CPU and ~100 MB) is imported only by a node whose memory is on a server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from memory.engine import FIELDS, METRIC, VECTOR, field_options
from memory.errors import BackendError, StoreUnavailable
from memory.uris import redact

if TYPE_CHECKING:
    from pymilvus import MilvusClient

T = TypeVar("T")
_UNAVAILABLE = {"UNAVAILABLE", "DEADLINE_EXCEEDED"}  # gRPC status code names


def _code_name(code: Any) -> str:
    """The name of a gRPC status code (``grpc.StatusCode.UNAVAILABLE``: "UNAVAILABLE")."""
    return str(getattr(code, "name", code))


class ServerEngine:
    def __init__(self, uri: str, token: str | None, timeout: float) -> None:
        from pymilvus import MilvusClient, MilvusException

        self._where = redact(uri)
        self._timeout = timeout
        try:
            self._client: MilvusClient | None = MilvusClient(
                uri=uri, token=token or "", timeout=timeout, dedicated=True)
        except MilvusException as exc:
            raise StoreUnavailable(
                f"cannot open Milvus at {self._where}: {exc.message or 'unreachable'}"
            ) from exc

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        import grpc  # type: ignore[import-untyped]
        from pymilvus import MilvusException

        try:
            yield
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            cls = StoreUnavailable if _code_name(code) in _UNAVAILABLE else BackendError
            raise cls(f"Milvus at {self._where}: {what} failed: {code}") from exc
        except MilvusException as exc:
            unavailable = (_code_name(exc.code) in _UNAVAILABLE
                           or "unavailable" in exc.message.lower())
            cls = StoreUnavailable if unavailable else BackendError
            raise cls(f"Milvus at {self._where}: {what} failed: {exc.message or exc}") from exc

    def _client_(self) -> MilvusClient:
        if self._client is None:
            raise BackendError("the memory store is not open")
        return self._client

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._translated(what):
            return fn(*args, timeout=self._timeout, **kwargs)

    def has_collection(self, name: str) -> bool:
        return bool(self._call("has_collection", self._client_().has_collection, name))

    def create_collection(
        self, name: str, dim: int, index: tuple[str, dict[str, Any]],
        properties: dict[str, str],
    ) -> None:
        from pymilvus import DataType

        client = self._client_()
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        for n, t, options in FIELDS:
            schema.add_field(n, DataType[t], **field_options(options, n, dim))
        index_type, build = index
        params = client.prepare_index_params()
        params.add_index(VECTOR, index_type=index_type, metric_type=METRIC, params=build)
        self._call(
            f"create collection {name}", client.create_collection, name,
            schema=schema, index_params=params,
            # Session: a node reads its own writes at once, without Strong's ~200 ms wait.
            consistency_level="Session", properties=properties,
        )

    def properties(self, name: str) -> dict[str, str]:
        desc = self._call("describe_collection", self._client_().describe_collection, name)
        return dict(desc.get("properties") or {})

    def load(self, name: str) -> None:
        self._call("load_collection", self._client_().load_collection, name)

    def query(
        self, name: str, expr: str, fields: Sequence[str], limit: int | None
    ) -> list[dict[str, Any]]:
        window = {} if limit is None else {"limit": limit}
        return self._call(f"query {name}", self._client_().query, name, filter=expr,
                          output_fields=list(fields), **window)

    def count(self, name: str, expr: str) -> int:
        rows = self.query(name, expr, ("count(*)",), None)
        return int(rows[0]["count(*)"]) if rows else 0

    def insert(self, name: str, rows: list[dict[str, Any]]) -> None:
        # Not upsert: Milvus 2.3 upserts rows into the wrong partition when the collection
        # has a partition key, and partition-key filters then never find them again.
        self._call(f"insert into {name}", self._client_().insert, name, rows)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        self._call(f"delete from {name}", self._client_().delete, name, ids=list(ids))

    def search(
        self, name: str, vector: list[float], expr: str, k: int, fields: Sequence[str],
        params: dict[str, Any],
    ) -> list[tuple[dict[str, Any], float]]:
        hits = self._call(
            f"search {name}", self._client_().search, name, data=[vector], filter=expr,
            limit=k, output_fields=list(fields),
            search_params={"metric_type": METRIC, "params": params},
        )
        return [(hit["entity"], float(hit["distance"])) for hit in hits[0]]

    def flush(self, name: str) -> None:
        self._call(f"flush {name}", self._client_().flush, name)

    def index_state(self, name: str) -> tuple[str, int]:
        info = self._call("describe_index", self._client_().describe_index, name, VECTOR)
        return str(info.get("index_type", "?")), int(info.get("pending_index_rows", 0))

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
