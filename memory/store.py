"""The memory store: signed records in three Milvus collections, used from trio.

``async with MemoryStore(uri, tenant=..., embedder=...) as store`` opens (or creates) the
collections, checks that they were built by the same embedder, and loads the per-author
marks (:mod:`memory.marks`; rows that do not verify never count: on a shared server anyone
could plant one); leaving the block flushes what needs flushing and closes the client,
even when cancelled. Every blocking call runs in a worker thread under one
``trio.CapacityLimiter``; writes are serialised so that "is it new?" and "insert it" are
one step as far as this node is concerned.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import trio

from memory.backend import MAX_WINDOW, Backend, literal
from memory.budget import content_bytes
from memory.embedders import Embedder
from memory.errors import MemoryStoreError
from memory.flushing import FLUSH_IDLE_S, FlushPolicy
from memory.marks import Marks, load_marks
from memory.uris import redact
from memory.writing import PutResult, Writer
from protocols.envelope import validate_network_id
from protocols.errors import ProtocolError
from protocols.peerid import validate_peer_id
from protocols.records import (
    COLLECTIONS,
    MAX_TEXT_BYTES,
    TOMBSTONE,
    MemoryRecord,
    is_kind,
    is_record_id,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Chosen by measurement, see bench/RESULTS.md ("Memory store").
DEFAULT_INDEX = "HNSW"
MAX_K = 200
#: Longest time closing may take (flush + close), even when the caller is cancelled.
CLOSE_DEADLINE_S = 60.0


@dataclass(frozen=True, slots=True)
class SearchHit:
    record: MemoryRecord
    score: float
    collection: str


class MemoryStore:
    def __init__(
        self,
        uri: str,
        *,
        tenant: str,
        embedder: Embedder,
        token: str | None = None,
        limiter: trio.CapacityLimiter | None = None,
        index_type: str = DEFAULT_INDEX,
        timeout: float = 30.0,
    ) -> None:
        try:
            validate_network_id(tenant)
        except ProtocolError as exc:
            raise MemoryStoreError(f"invalid tenant: {exc}") from None
        self.tenant = tenant
        self.embedder = embedder
        self._backend = Backend(
            uri, tenant, embedder.name, embedder.dim, token=token, index_type=index_type,
            timeout=timeout,
        )
        self._writer = Writer(self._backend, embedder, tenant)
        self._limiter = limiter or trio.CapacityLimiter(4)
        self._write_lock = trio.Lock()
        self._marks = Marks()
        self._flushes = FlushPolicy()
        self._is_open = False
        #: Set when an opening ended, opened or not (what calls made meanwhile wait for).
        self._opening: trio.Event | None = None
        self._failure = ""
        #: Called with the seconds each search took (embedding included): the node's metrics.
        self.search_observers: list[Callable[[float], None]] = []

    # -- lifecycle ------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        # Not abandoned on cancel: a thread left running could touch the client after close.
        # A server call carries its own timeout instead; a Milvus Lite call is work in this
        # process (CPU and disk), with no network to wait on.
        return await trio.to_thread.run_sync(functools.partial(fn, *args), limiter=self._limiter)

    @property
    def state(self) -> str:
        """One of: open, opening (calls wait for it), failed: why, closed."""
        if self._is_open:
            return "open"
        if self._opening is not None and not self._opening.is_set():
            return "opening"
        return f"failed: {self._failure}" if self._failure else "closed"

    @asynccontextmanager
    async def opening(self) -> AsyncIterator[MemoryStore]:
        """Open the store in the background: the block starts at once, and every call made
        meanwhile waits until the store is open (nothing is refused for being early). An
        opening that fails ends the block with its error; leaving the block closes the store.

        A node serves its peers and joins the mesh while Milvus Lite starts (seconds)."""
        self._begin_opening()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._open)
                yield self
                nursery.cancel_scope.cancel()  # an opening still under way is not wanted
        finally:
            if self._is_open:
                await self.__aexit__(None, None, None)

    async def wait_open(self) -> None:
        """Wait until the store is open; MemoryStoreError if it is not (or failed to open)."""
        if self._is_open:
            return
        if self._opening is not None:
            await self._opening.wait()
        if not self._is_open:
            raise MemoryStoreError(f"the memory store is not open ({self.state})"
                                   if self._failure else
                                   "the memory store is not open (use 'async with')")

    def _begin_opening(self) -> None:
        if self._is_open or self.state == "opening":
            raise MemoryStoreError("the memory store is already open")
        self._opening, self._failure = trio.Event(), ""

    async def __aenter__(self) -> MemoryStore:
        self._begin_opening()
        await self._open()
        return self

    async def _open(self) -> None:
        assert self._opening is not None
        try:
            await self._run(self._backend.open)
            if self._backend.is_lite:
                # After a crash Lite replays its log into the slow memtable: seal it now.
                await self._run(self._flush_pending, True)
            self._marks = await self._run(load_marks, self._backend)
            self._is_open = True
        except BaseException as exc:
            if not isinstance(exc, trio.Cancelled):  # cancelled: closed, not failed
                self._failure = str(exc) or type(exc).__name__
            with trio.CancelScope(shield=True):
                await self._run(self._backend.close)
            raise
        finally:
            self._opening.set()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._is_open = False
        deadline = trio.current_time() + CLOSE_DEADLINE_S
        acquired = False
        with trio.CancelScope(deadline=deadline, shield=True) as scope:
            try:
                # Let a write in flight in another task finish before the client goes.
                await self._write_lock.acquire()
                acquired = True
                # A reopened Lite file replays unflushed rows into its slow memtable.
                if self._backend.is_lite:
                    await self._run(self._flush_pending, False)
            except MemoryStoreError as error:
                # The data is safe in Milvus' log either way; only search speed suffers.
                log.warning("flush on close failed: %s", error)
            finally:
                await self._run(self._backend.close)
                if acquired:
                    self._write_lock.release()
        if scope.cancelled_caught:
            log.warning("closing the memory store took over %s s", CLOSE_DEADLINE_S)

    # -- writing --------------------------------------------------------------------------

    async def put(self, records: Sequence[MemoryRecord], *, verified: bool = False) -> int:
        """Verify, embed and store ``records``; return how many were not held before.

        The whole batch is refused (InvalidRecord) if any record is invalid or belongs to
        another tenant. ``verified=True`` skips re-checking ids and signatures: only for
        records this process made (``new_record``) or decoded from a peer's bytes
        (``record_from_wire``, which checks both), so that a record relayed through the mesh
        has its signature checked once per node, not twice. Known ids are skipped. A
        tombstone deletes its target when both have the same author, even if the target
        arrives after it, and is itself kept.
        """
        await self.wait_open()
        unique = list({r.id: r for r in records}.values())
        if not unique:
            return 0
        result = PutResult([], Counter(), [])
        async with self._write_lock:
            try:
                await self._run(self._writer.put, unique, result, verified)
            finally:
                # Even if a later chunk failed, what was stored counts: next_seq must never
                # hand out a sequence number that is already taken.
                stored = {r.id for r in result.stored}
                for r in result.accounted:
                    held = (r.seq,) if r.id in stored else ()
                    self._marks.account(r.author, r.positions, held=held)
                due = self._flushes.wrote(result.by_collection)
            if self._backend.is_lite and due:
                await self._run(self._flush_pending, False)
        return len(result.stored)

    async def run_flusher(
        self, *, idle_s: float = FLUSH_IDLE_S,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Until cancelled, seal a burst of puts to Milvus Lite once it pauses for ``idle_s``
        (or every LITE_BURST_ROWS rows), not after every put leaving LITE_FLUSH_ROWS
        (memory.flushing). A no-op on a server."""
        if not self._backend.is_lite:
            task_status.started()
            return
        await self._flushes.run(self._flush_idle, idle_s=idle_s, task_status=task_status)

    async def _flush_idle(self) -> None:
        async with self._write_lock:
            if self._is_open:
                await self._run(self._flush_pending, False)

    def _flush_pending(self, everything: bool) -> None:
        def flush(name: str) -> None:
            if everything or self._flushes.unflushed[name]:
                self._backend.flush(name)
                self._flushes.flushed(name)

        self._backend.each_collection(flush)

    async def flush(self) -> None:
        """Seal every collection's fresh rows into indexed, persisted segments."""
        await self.wait_open()
        async with self._write_lock:
            await self._run(self._flush_pending, True)

    # -- reading --------------------------------------------------------------------------

    async def search(
        self, query: str, *, k: int = 5, collection: str | None = None, kind: str | None = None
    ) -> list[SearchHit]:
        """The ``k`` records most similar to ``query`` (best first), in one collection or
        in all three merged by score; tombstones are never returned."""
        await self.wait_open()
        if not 1 <= k <= MAX_K:
            raise MemoryStoreError(f"k must be in 1..{MAX_K}, got {k}")
        names = COLLECTIONS if collection is None else (_known(collection),)
        if kind is not None and not is_kind(kind):
            raise MemoryStoreError(f"invalid kind filter {kind!r}")
        if len(query) > MAX_TEXT_BYTES:
            raise MemoryStoreError(f"a query is limited to {MAX_TEXT_BYTES} characters")
        # Unlike a Milvus call, an embedding touches nothing the store closes: a caller's
        # deadline may abandon it (the thread keeps its limiter token until it ends).
        started = time.perf_counter()
        (vector,) = await trio.to_thread.run_sync(
            self._writer.embed, [query], limiter=self._limiter, abandon_on_cancel=True)

        def search_all() -> list[SearchHit]:
            return [
                SearchHit(record, score, name)
                for name in names
                for record, score in self._backend.search(name, vector, k, kind)
            ]

        hits = await self._run(search_all)
        hits.sort(key=lambda hit: (-hit.score, hit.record.id))
        for observe in self.search_observers:
            observe(time.perf_counter() - started)
        return hits[:k]

    async def get(self, ids: Sequence[str]) -> list[MemoryRecord]:
        """The held records among ``ids`` (tombstones included), in the order asked."""
        await self.wait_open()
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        if len(wanted) > MAX_WINDOW or not all(is_record_id(i) for i in wanted):
            raise MemoryStoreError(f"ids must be up to {MAX_WINDOW} hex sha256 strings")
        found: dict[str, MemoryRecord] = {}
        for name in COLLECTIONS:
            found.update((r.id, r) for r in await self._run(self._backend.get, name, wanted))
        return [found[i] for i in wanted if i in found]

    async def high_water(self) -> dict[str, int]:
        """Per author, its mark: every position up to it is held or freed (memory.marks)."""
        await self.wait_open()
        return self._marks.marks()

    async def expected(self, author: str) -> int:
        """The position of ``author``'s sequence this store needs next (its mark + 1)."""
        await self.wait_open()
        return self._marks.mark(author) + 1

    async def next_seq(self, author: str) -> int:
        """A seq ``author`` has not used as far as this store knows: after every record of
        it held (for this node's own writes)."""
        await self.wait_open()
        return self._marks.top(author) + 1

    async def held_bytes(self, author: str) -> int:
        """Bytes of text and metadata of ``author``'s records held (memory.budget's
        measure); reads them all, so callers keep the answer."""
        await self.wait_open()
        _valid_author(author)
        where = f"author == {literal(author)} and kind != {literal(TOMBSTONE)}"

        def count() -> int:
            return sum(content_bytes(row["text"], row.get("meta") or {})
                       for name in COLLECTIONS
                       for row in self._backend.scan(name, ("text", "meta"), where=where))

        return await self._run(count)

    def waiting(self) -> dict[str, int]:
        """Per author, how many positions are held beyond a gap (wanted: the gap)."""
        return {a: n for a in self._marks.authors() if (n := self._marks.ahead(a))}

    async def records_since(self, author: str, after_seq: int, limit: int) -> list[MemoryRecord]:
        """Up to ``limit`` of ``author``'s records with seq > ``after_seq``, by seq."""
        await self.wait_open()
        _valid_author(author)
        if not 1 <= limit <= MAX_WINDOW or after_seq < 0:
            raise MemoryStoreError(f"need 0 <= after_seq and 1 <= limit <= {MAX_WINDOW}")
        return await self._run(
            self._backend.records_between, author, after_seq, self._marks.top(author), limit
        )

    async def entries_since(
        self, author: str, after_seq: int, limit: int
    ) -> list[MemoryRecord]:
        """What a sync peer gets for ``author``'s positions after ``after_seq``, up to
        ``limit`` of them and the mark: per position the record with that seq, else the
        tombstone freeing it; it stops before a position this store cannot account for."""
        await self.wait_open()
        _valid_author(author)
        if not 1 <= limit <= MAX_WINDOW or after_seq < 0:
            raise MemoryStoreError(f"need 0 <= after_seq and 1 <= limit <= {MAX_WINDOW}")
        high = min(after_seq + limit, self._marks.mark(author))
        if high <= after_seq:
            return []

        def read() -> list[MemoryRecord]:
            found = self._backend.records_between(author, after_seq, high, limit)
            at = {r.seq: r for r in reversed(found)}
            missing = [p for p in range(after_seq + 1, high + 1) if p not in at]
            if missing:
                for name in COLLECTIONS:
                    for t in self._backend.freeing(name, author, missing):
                        at.setdefault(t.frees or 0, t)
            entries = []
            for position in range(after_seq + 1, high + 1):
                if position not in at:
                    break  # e.g. freed by a version-1 tombstone, which does not say so
                entries.append(at[position])
            return entries

        return await self._run(read)

    async def export(self) -> AsyncIterator[MemoryRecord]:
        """Every record held, tombstones included, in (author, seq) order."""
        await self.wait_open()
        for author in self._marks.authors():
            after = 0
            while batch := await self.records_since(author, after, 1000):
                for record in batch:
                    yield record
                after = batch[-1].seq

    async def count(self) -> dict[str, int]:
        await self.wait_open()
        return {name: await self._run(self._backend.count, name) for name in COLLECTIONS}

    async def stats(self) -> dict[str, Any]:
        await self.wait_open()

        def authors() -> Counter[str]:
            tally: Counter[str] = Counter()
            for name in COLLECTIONS:
                for row in self._backend.scan(name, ("author", "kind")):
                    if row["kind"] != TOMBSTONE:
                        tally[row["author"]] += 1
            return tally

        indexes = {name: await self._run(self._backend.index_state, name) for name in COLLECTIONS}
        return {
            "uri": redact(self._backend.uri),
            "backend": "milvus-lite" if self._backend.is_lite else "milvus-server",
            "tenant": self.tenant,
            "embedder": {"name": self.embedder.name, "dim": self.embedder.dim},
            "index_type": indexes[COLLECTIONS[0]][0],
            # Rows a Milvus server has not indexed yet (Milvus Lite always reports 0).
            "unindexed_rows": {name: pending for name, (_, pending) in indexes.items()},
            "collections": await self.count(),
            "authors": dict(await self._run(authors)),
        }


def _known(collection: str) -> str:
    if collection not in COLLECTIONS:
        raise MemoryStoreError(f"unknown collection {collection!r}: use one of {COLLECTIONS}")
    return collection


def _valid_author(author: str) -> None:
    try:
        validate_peer_id(author)
    except (ProtocolError, ValueError) as exc:
        raise MemoryStoreError(f"invalid author {author!r}: {exc}") from None
