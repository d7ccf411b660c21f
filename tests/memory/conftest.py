"""Fixtures of the memory tests: a real standalone Milvus server, and stores on either backend.

The store suite is parametrised over ``lite`` (a Milvus Lite file in a temporary folder)
and ``server`` (the ``milvus-server`` of PyPI package ``milvus``, started once per session
on loopback ports in a temporary folder, each test in a fresh database). If that server
cannot start, the server-mode tests fail with its log: they never skip silently.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pymilvus import MilvusClient

from memory.embedders import HashingEmbedder
from memory.errors import StoreUnavailable
from memory.milvus_server import MilvusServer, start_milvus_server
from memory.store import MemoryStore
from protocols.peerid import Signer

from .helpers import TENANT


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    try:
        server = start_milvus_server(tmp_path_factory.mktemp("milvus-server"))
    except StoreUnavailable as exc:
        pytest.fail(f"cannot start the Milvus server for the server-mode tests: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["lite", pytest.param("server", marks=pytest.mark.milvus_server)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_uri(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A uri with no memory collections yet: a Lite file, or a fresh server database."""
    if backend == "lite":
        yield str(tmp_path / "memory.db")
        return
    server: MilvusServer = request.getfixturevalue("milvus_server")
    database = "t" + uuid.uuid4().hex[:12]
    admin = MilvusClient(uri=server.uri, timeout=30, dedicated=True)
    admin.create_database(database)
    try:
        yield f"{server.uri}/{database}"
    finally:
        # Milvus 2.3 allows 64 databases: give each one back. (It cannot switch the
        # database of an open client, hence a second one.)
        inside = MilvusClient(uri=server.uri, db_name=database, timeout=30, dedicated=True)
        for name in inside.list_collections():
            inside.drop_collection(name)
        inside.close()
        admin.drop_database(database)
        admin.close()


@pytest.fixture
def signer() -> Signer:
    return Signer.from_seed(bytes(range(32)))


@pytest.fixture
def other_signer() -> Signer:
    return Signer.from_seed(bytes(range(1, 33)))


@pytest.fixture
async def store(store_uri: str) -> AsyncIterator[MemoryStore]:
    async with MemoryStore(store_uri, tenant=TENANT, embedder=HashingEmbedder()) as opened:
        yield opened
