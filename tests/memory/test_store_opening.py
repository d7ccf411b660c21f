"""Opening the store in the background (MemoryStore.opening): what a node does at start-up,
so that it serves its peers while Milvus starts."""

from __future__ import annotations

import pytest
import trio

from memory.embedders import HashingEmbedder
from memory.errors import EmbedderMismatch, MemoryStoreError
from memory.store import MemoryStore
from protocols.peerid import Signer
from protocols.records import COLLECTIONS, new_record

from .helpers import TENANT

EK, CH, PS = COLLECTIONS


def _store(uri: str, dim: int | None = None) -> MemoryStore:
    embedder = HashingEmbedder(dim) if dim else HashingEmbedder()
    return MemoryStore(uri, tenant=TENANT, embedder=embedder)


async def test_calls_made_while_opening_wait_for_it(store_uri: str, signer: Signer) -> None:
    record = new_record(signer, collection=EK, tenant=TENANT, text="early", kind="note",
                        agent="tester", created=1_700_000_000.0, seq=1)
    store = _store(store_uri)
    async with store.opening():
        # The block starts before the store is open; nothing made now is refused.
        assert store.state == "opening"
        assert await store.put([record]) == 1
        assert store.state == "open"
        assert await store.count() == {EK: 1, CH: 0, PS: 0}
    assert store.state == "closed"
    with pytest.raises(MemoryStoreError, match="not open"):
        await store.count()
    async with _store(store_uri) as reopened:
        assert await reopened.get([record.id]) == [record]


async def test_a_failed_opening_ends_the_block(store_uri: str) -> None:
    async with _store(store_uri):
        pass  # built by the default embedder
    store = _store(store_uri, dim=256)
    waited = trio.Event()
    with pytest.raises(BaseExceptionGroup) as caught:
        async with store.opening():
            try:
                await store.count()  # waits for the opening, which fails
            finally:
                waited.set()
            pytest.fail("a call answered although the store never opened")
    assert caught.value.subgroup(EmbedderMismatch) is not None
    assert waited.is_set()
    assert store.state.startswith("failed: ")
    with pytest.raises(MemoryStoreError, match="not open \\(failed: "):
        await store.count()


async def test_leaving_while_opening_closes_cleanly(store_uri: str, signer: Signer) -> None:
    store = _store(store_uri)
    async with store.opening():
        pass  # left at once: the opening under way is cancelled and the store closed
    assert store.state == "closed"
    async with store.opening():  # and it opens again
        assert await store.count() == {EK: 0, CH: 0, PS: 0}
