"""Agent cards by digest: the cache, and the fetches that fill it.

Presence announcements name a node's agent cards by digest (:mod:`protocols.presence`); a
node fetches the cards of a digest it has not seen, once, from a connected peer that has
them (the announcer, or the neighbour that relayed the announcement, which fetched them
itself), and keeps them by digest. Cards are content-addressed, so which peer served them
does not matter. The cache is bounded in bytes (least recently used go first) and the fetch
queue in length: a digest that could not be fetched is wanted again at its next mention.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from typing import Any

import trio

from meshnode.node.transport import DialError
from protocols.errors import ProtocolError
from protocols.presence import unpack_cards

log = logging.getLogger(__name__)
#: Digests waiting to be fetched; past it, new wants are dropped until the queue drains.
QUEUE = 256
FETCH_WORKERS = 2
FETCH_TIMEOUT_S = 5.0
#: A relay may still be fetching the cards itself: ask again after this long, this often.
RETRY_S = (0.0, 1.0, 3.0)

Fetch = Callable[[str, str], Awaitable[bytes]]


class CardCache:
    def __init__(self, *, max_bytes: int = 16 << 20) -> None:
        self.max_bytes = max_bytes
        self._cards: OrderedDict[str, tuple[bytes, tuple[dict[str, Any], ...]]] = OrderedDict()
        self._bytes = 0

    def __contains__(self, digest: object) -> bool:
        return digest in self._cards

    def __len__(self) -> int:
        return len(self._cards)

    @property
    def bytes_held(self) -> int:
        return self._bytes

    def get(self, digest: str) -> tuple[dict[str, Any], ...] | None:
        entry = self._cards.get(digest)
        if entry is None:
            return None
        self._cards.move_to_end(digest)
        return entry[1]

    def packed(self, digest: str) -> bytes | None:
        entry = self._cards.get(digest)
        return None if entry is None else entry[0]

    def put(self, digest: str, packed: bytes) -> tuple[dict[str, Any], ...]:
        """Store the cards fetched for ``digest``; ProtocolError if they are not its."""
        cards = unpack_cards(packed, digest)
        if digest not in self._cards:
            self._bytes += len(packed)
        self._cards[digest] = (packed, cards)
        self._cards.move_to_end(digest)
        while self._bytes > self.max_bytes and len(self._cards) > 1:
            _, (old, _) = self._cards.popitem(last=False)
            self._bytes -= len(old)
        return cards


class CardFetcher:
    """Fetches wanted digests from the peers that may have them, into a :class:`CardCache`."""

    def __init__(self, cache: CardCache, fetch: Fetch,
                 connected: Callable[[], set[str]]) -> None:
        self.cache = cache
        self._fetch = fetch
        self._connected = connected
        self._send, self._receive = trio.open_memory_channel[tuple[str, tuple[str, ...]]](QUEUE)
        self._queued: set[str] = set()
        self.fetched = 0
        self.failed = 0

    def want(self, digest: str, sources: Sequence[str]) -> None:
        """Fetch ``digest`` from the first of ``sources`` that has it (if not cached)."""
        if not digest or digest in self.cache or digest in self._queued:
            return
        with suppress(trio.WouldBlock):
            self._send.send_nowait((digest, tuple(dict.fromkeys(sources))))
            self._queued.add(digest)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(FETCH_WORKERS):
                nursery.start_soon(self._worker)
            task_status.started()

    async def _worker(self) -> None:
        async for digest, sources in self._receive:
            try:
                if not await self._get(digest, sources):
                    self.failed += 1
                    log.debug("agent cards not fetched", extra={"digest": digest[:12]})
            finally:
                self._queued.discard(digest)

    async def _get(self, digest: str, sources: tuple[str, ...]) -> bool:
        for delay in RETRY_S:
            await trio.sleep(delay)
            # Only peers already connected: fetching cards is no reason to dial anyone.
            for peer in [p for p in sources if p in self._connected()]:
                if digest in self.cache:
                    return True
                try:
                    with trio.fail_after(FETCH_TIMEOUT_S):
                        packed = await self._fetch(peer, digest)
                    self.cache.put(digest, packed)
                except (ProtocolError, DialError, trio.TooSlowError,
                        trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    log.debug("agent cards fetch failed", extra={"peer": peer,
                                                                 "error": str(exc)})
                    continue
                self.fetched += 1
                return True
        return digest in self.cache
