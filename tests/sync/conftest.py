"""Fixtures of the sync tests: Milvus Lite stores in temporary files."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from memory.embedders import HashingEmbedder
from memory.store import MemoryStore
from tests.sync.helpers import TENANT

OpenStore = Callable[..., Awaitable[MemoryStore]]



@pytest.fixture
async def open_store(tmp_path: Path) -> AsyncIterator[OpenStore]:
    """``await open_store("a")`` opens a fresh store, closed when the test ends."""
    async with AsyncExitStack() as stack:

        async def make(name: str, *, tenant: str = TENANT) -> MemoryStore:
            store = MemoryStore(
                str(tmp_path / f"{name}.db"), tenant=tenant, embedder=HashingEmbedder()
            )
            return await stack.enter_async_context(store)

        yield make
