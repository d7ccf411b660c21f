"""When a Milvus Lite store seals its fresh rows (flushes), as one small policy object.

Milvus Lite searches rows still in its memtable slowly (about +0.1 ms per row and query,
measured); sealing them costs 0.1-0.3 s and makes Lite build an HNSW index for the new
segment, then compact and re-index in the background. So a store flushes a collection after
any put that leaves LITE_FLUSH_ROWS unflushed (see bench/RESULTS.md, "Milvus Lite: when to
flush"). While :meth:`FlushPolicy.run` runs (a node's knowledge service runs it), a burst of
puts, each less than ``idle_s`` after the one before, is sealed only every LITE_BURST_ROWS
rows, and the rest ``idle_s`` after its last put: sealing a 1,000-record burst every 200
rows cost each node ~0.15 s of CPU more than sealing it once (0.4 s while faiss's threads
spun), and every node of a mesh takes the same burst; meanwhile its searches are up to
~60 ms slower. The pause is seconds because a loaded node applies a mesh's batches 2-3 s
apart.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping

import trio

from memory.errors import MemoryStoreError

log = logging.getLogger(__name__)

LITE_FLUSH_ROWS = 200
LITE_BURST_ROWS = 1000
FLUSH_IDLE_S = 3.0


class FlushPolicy:
    def __init__(self) -> None:
        #: Rows put and not yet sealed, per collection.
        self.unflushed: Counter[str] = Counter()
        self._due: trio.Event | None = None
        self._pause: trio.CancelScope | None = None
        self._idle_s = FLUSH_IDLE_S

    def wrote(self, by_collection: Mapping[str, int]) -> bool:
        """Count rows a put stored; True if the caller should flush now (else a running
        :meth:`run` flushes them once the burst pauses, or nothing is due yet)."""
        self.unflushed.update(by_collection)
        pending = max(self.unflushed.values(), default=0)
        if self._due is None:
            return pending >= LITE_FLUSH_ROWS
        if self._pause is not None:
            self._pause.deadline = trio.current_time() + self._idle_s  # the burst goes on
        if pending >= LITE_BURST_ROWS:
            return True
        if pending >= LITE_FLUSH_ROWS:
            self._due.set()
        return False

    def flushed(self, collection: str) -> None:
        self.unflushed[collection] = 0

    async def run(
        self, flush: Callable[[], Awaitable[None]], *, idle_s: float = FLUSH_IDLE_S,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Defer flushes to the pauses of bursts until cancelled; ``flush`` seals what is
        pending (taking the store's write lock)."""
        self._idle_s = idle_s
        self._due = trio.Event()
        try:
            task_status.started()
            while True:
                await self._due.wait()
                with trio.CancelScope(deadline=trio.current_time() + idle_s) as self._pause:
                    await trio.sleep_forever()
                self._pause = None
                self._due = trio.Event()
                try:
                    await flush()
                except MemoryStoreError as error:
                    # The rows are stored either way; only search speed suffers.
                    log.warning("deferred flush failed: %s", error)
        finally:
            self._due = self._pause = None
