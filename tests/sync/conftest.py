"""Fixtures of the sync tests: Milvus Lite stores in temporary files, and a hang watchdog.

A decoder or a sync must never hang: if one test is still running after ``TEST_BUDGET_S``
faulthandler dumps every thread's stack and ends the run, which then fails loudly. This is a
hang detector, not a speed assertion; the budget is far above what any test here needs.
"""

from __future__ import annotations

import faulthandler
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from memory.embedders import HashingEmbedder
from memory.store import MemoryStore
from tests.sync.helpers import TENANT

TEST_BUDGET_S = 300.0

OpenStore = Callable[..., Awaitable[MemoryStore]]


@pytest.fixture(autouse=True)
def _hang_watchdog() -> Iterator[None]:
    faulthandler.dump_traceback_later(TEST_BUDGET_S, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


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
