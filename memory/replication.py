"""Memory replication: the memsync protocol and knowledge announcements, against a store.

The protocol logic lives in :mod:`protocols.memsync`; this module drives it over any
:class:`ByteStream` with a deadline on every read and write, and applies what arrives to a
:class:`~memory.store.MemoryStore`.

Nodes apply an author's records in seq order (the sync client checks it, and an
announcement is applied only if it is the author's next record), so per-author high-water
marks summarise everything a node holds. A peer that misbehaves costs only itself: bad
records are dropped, logged and counted, garbage gets an Error frame and a closed stream,
and no peer error ever escapes :meth:`Replicator.serve`.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, Protocol

import trio

from memory.budget import AuthorBudget, Limits, PeerSyncBudget
from memory.errors import InvalidRecord, MemoryStoreError, ReplicationError, StoreUnavailable
from memory.store import MemoryStore
from protocols.codec import pack
from protocols.errors import ProtocolError
from protocols.memsync import (
    ERR_BUSY,
    ERR_INTERNAL,
    MAX_AUTHORS,
    MAX_BATCH,
    Closed,
    Error,
    Pull,
    RecordsReceived,
    Summary,
    SyncClient,
    SyncServer,
    WrongTenant,
    decode_announcement,
    error_code,
)
from protocols.records import MemoryRecord, record_to_wire

log = logging.getLogger("meshnode.memsync")

_READ_SIZE = 64 * 1024
#: Store failures one sync tolerates (each stops one author) before it gives up: an
#: embeddings endpoint that is down fails every author, and each try may be slow.
MAX_STORE_FAILURES = 3
#: What a failing connection raises: trio streams raise the first two, sockets OSError.
_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class ByteStream(Protocol):
    """A bidirectional byte stream. ``read`` returns b"" at end of stream; a broken
    connection raises one of trio.BrokenResourceError, trio.ClosedResourceError, OSError.
    (A libp2p stream needs a thin adapter: it signals end of stream with StreamEOF.)"""

    async def read(self, n: int) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SyncResult:
    peer: str
    pulled: int
    rejected: int
    duration_s: float


class AnnouncementStatus(Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    #: The author's earlier records are missing here: sync with the announcing peer.
    GAP = "gap"
    REJECTED = "rejected"
    #: The author is over its budget (memory.budget): not stored now, asked for later.
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Announcement:
    status: AnnouncementStatus
    record: MemoryRecord | None
    reason: str = ""


@dataclass
class _PeerLag:
    last_sync: float | None = None
    pulled: int = 0
    rejected: int = 0
    authors_behind: int = 0
    last_error: str | None = None


@dataclass
class _Session:
    conn: SyncClient | SyncServer | None = None
    error: str | None = None
    store_failures: int = 0


def _ahead(theirs: Mapping[str, int], ours: Mapping[str, int]) -> int:
    return sum(1 for author, seq in theirs.items() if seq > ours.get(author, 0))


def _size(records: Sequence[MemoryRecord]) -> int:
    return sum(len(pack(record_to_wire(r))) for r in records)


class Replicator:
    def __init__(
        self,
        store: MemoryStore,
        *,
        tenant: str,
        batch_size: int = MAX_BATCH,
        io_timeout: float = 10.0,
        limits: Limits | None = None,
        self_id: str = "",
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be in 1..{MAX_BATCH}")
        if io_timeout <= 0:
            raise ValueError("io_timeout must be positive")
        if tenant != store.tenant:
            raise ValueError(f"tenant {tenant!r} differs from the store's {store.tenant!r}")
        self.tenant = tenant
        self.batch_size = batch_size
        self.io_timeout = io_timeout
        self._store = store
        self._lag: dict[str, _PeerLag] = {}
        #: The budgets' time (seconds, monotonic).
        self.clock = clock
        limits = limits if limits is not None else Limits()
        self.budget = AuthorBudget(limits, exempt=frozenset({self_id} - {""}))
        self.serve_budget = PeerSyncBudget(limits)
        #: Records (or batches) the store could not take, by reason; and budget refusals.
        self.refused: Counter[str] = Counter()
        #: Called with (peer, reason) when a peer's sync is refused for its budget (the node
        #: makes it evidence against that peer).
        self.on_sync_refused: Callable[[str, str], None] = lambda _peer, _reason: None
        # Serialises check-then-put so two paths never store the same record at once.
        self._apply_lock = trio.Lock()

    def lag(self) -> dict[str, dict[str, Any]]:
        """Per peer: ``last_sync`` (wall-clock time of the last attempt), ``pulled`` and
        ``rejected`` (records, in that attempt), ``authors_behind`` (authors this peer had
        more of, as of the last summary seen either way) and ``last_error`` (how the last
        conversation with this peer, in either role, failed; None if it did not)."""
        return {peer: asdict(lag) for peer, lag in self._lag.items()}

    async def sync_with(self, peer: str, stream: ByteStream) -> SyncResult:
        """Pull from ``peer`` whatever it has and we lack; closes ``stream``.

        Raises ReplicationError if the sync did not complete; what was pulled until then
        stays stored, so the next sync resumes from there.
        """
        started = trio.current_time()
        lag = self._lag.setdefault(peer, _PeerLag())
        lag.pulled = lag.rejected = 0
        client: SyncClient | None = None
        async with self._session(peer, stream) as session:
            ours = await self._store.high_water()
            client = SyncClient(self.tenant, ours, batch_size=self.batch_size)
            session.conn = client
            await self._flush(stream, client)
            while not client.closed:
                for event in client.receive_data(await self._read(stream)):
                    if isinstance(event, RecordsReceived):
                        lag.rejected += self._log_rejected(peer, event.rejected)
                        kept, stored = await self._take(peer, event.records, session)
                        lag.pulled += stored
                        client.applied(kept)
                    elif isinstance(event, Error):
                        raise ReplicationError(
                            f"{peer} refused to sync: [{event.code}] {event.message}"
                        )
                    elif isinstance(event, Closed):
                        raise ReplicationError(f"{peer} closed the stream mid-sync")
                await self._flush(stream, client)
        if client is not None:
            lag.authors_behind = len(client.behind())
        lag.last_sync = time.time()
        lag.last_error = session.error
        if session.error is not None:
            raise ReplicationError(session.error)
        return SyncResult(peer, lag.pulled, lag.rejected, trio.current_time() - started)

    async def serve(self, peer: str, stream: ByteStream) -> None:
        """Answer ``peer``'s sync on ``stream`` until it is done; closes ``stream``.

        Never raises for anything the peer or the store did (it is logged instead).
        """
        lag = self._lag.setdefault(peer, _PeerLag())
        server = SyncServer(self.tenant)
        async with self._session(peer, stream) as session:
            session.conn = server
            while not server.closed:
                for event in server.receive_data(await self._read(stream)):
                    if isinstance(event, Summary | Pull) and (
                        why := self.serve_budget.pull(peer, self.clock())
                    ):
                        log.info("refusing to sync with %s: %s", peer, why)
                        self.on_sync_refused(peer, "sync")
                        server.abort(ERR_BUSY, why)
                    elif isinstance(event, Summary):
                        ours = await self._store.high_water()
                        lag.authors_behind = _ahead(event.high_water, ours)
                        server.send_summary(self._sampled(ours))
                    elif isinstance(event, Pull):
                        # One extra position tells whether the batch is the last one.
                        records = await self._store.entries_since(
                            event.author, event.after_seq, event.limit + 1
                        )
                        server.send_batch(records, more=len(records) > event.limit)
                        self.serve_budget.served(peer, _size(records[: event.limit]),
                                                 self.clock())
                    elif isinstance(event, Error):
                        log.info("%s ended sync: [%s] %s", peer, event.code, event.message)
                await self._flush(stream, server)
        lag.last_error = session.error

    async def on_announcement(self, peer: str, data: bytes) -> Announcement:
        """Apply an announced record if it is its author's next one.

        GAP means earlier records are missing: the caller should sync with ``peer``.
        Raises MemoryStoreError only if the store itself fails.
        """
        try:
            record = decode_announcement(data)
            if record.tenant != self.tenant:
                raise WrongTenant(f"record of tenant {record.tenant!r}")
        except ProtocolError as exc:
            log.warning("dropped announcement from %s: %s", peer, exc)
            return Announcement(AnnouncementStatus.REJECTED, None, str(exc))
        return await self.apply_announced(peer, record)

    async def apply_announced(self, peer: str, record: MemoryRecord) -> Announcement:
        """:meth:`on_announcement` for a record already decoded, verified and found to be of
        this tenant."""
        return await self.apply_announced_many(peer, (record,))

    async def apply_announced_many(
        self, peer: str, records: Sequence[MemoryRecord]
    ) -> Announcement:
        """Apply one author's announced records (verified, of this tenant, in seq order):
        those that continue the author's sequence, in one write. GAP if a record is missing
        before or between them (the caller syncs); DUPLICATE if all were held already."""
        author = records[0].author
        async with self._apply_lock:
            expected = await self._store.expected(author)
            fresh = [r for r in records if r.seq >= expected]
            if not fresh:
                return Announcement(AnnouncementStatus.DUPLICATE, records[-1])
            run = [fresh[0]] if fresh[0].seq == expected else []
            for record in fresh[1:]:
                if not run or record.seq != run[-1].seq + 1:
                    break
                run.append(record)
            if not run:
                reason = f"have {author} up to #{expected - 1}, got #{fresh[0].seq}"
                if self.budget.throttled(author, self.clock()):
                    # No sync for an author over budget: it would be refused anyway.
                    return Announcement(AnnouncementStatus.REFUSED, fresh[0], reason)
                return Announcement(AnnouncementStatus.GAP, fresh[0], reason)
            kept, why = await self._admit(run)
            if kept:
                try:
                    await self._store.put(run[:kept], verified=True)
                except InvalidRecord as exc:
                    log.warning("store refused records from %s: %s", peer, exc)
                    return Announcement(AnnouncementStatus.REJECTED, run[0], str(exc))
            if kept < len(run):
                # Not lost: the next sync asks for the rest again.
                return Announcement(AnnouncementStatus.REFUSED, run[kept], why)
        if len(run) < len(fresh):
            reason = f"have {author} up to #{run[-1].seq}, got #{fresh[len(run)].seq}"
            return Announcement(AnnouncementStatus.GAP, fresh[len(run)], reason)
        return Announcement(AnnouncementStatus.APPLIED, run[-1])

    async def _admit(self, records: Sequence[MemoryRecord]) -> tuple[int, str]:
        """How many of one author's ``records`` its budget allows (a prefix), and why not
        all of them."""
        if not records:
            return 0, ""
        author = records[0].author
        if not self.budget.knows(author):
            self.budget.start(author, await self._store.held_bytes(author), self.clock())
        return self.budget.admit(records, self.clock())

    async def _take(
        self, peer: str, records: Sequence[MemoryRecord], session: _Session
    ) -> tuple[int, int]:
        """Store what the budget allows of a batch (decoded by the sync client, so ids and
        signatures are checked already), in order, stopping at a record the store refuses.
        Returns (records kept, records new to the store)."""
        async with self._apply_lock:
            allowed, _ = await self._admit(records)
            kept = list(records[:allowed])
            if not kept:
                return 0, 0
            try:
                return len(kept), await self._store.put(kept, verified=True)
            except StoreUnavailable:
                raise
            except MemoryStoreError:
                pass  # one record's fault, or the embedder's: find out record by record
            stored = 0
            for i, record in enumerate(kept):
                try:
                    stored += await self._store.put([record], verified=True)
                except StoreUnavailable:
                    raise
                except MemoryStoreError as exc:
                    self.refused["store"] += 1
                    log.warning("store refused %s#%s from %s: %s", record.author, record.seq,
                                peer, exc)
                    session.store_failures += 1
                    if session.store_failures >= MAX_STORE_FAILURES:
                        raise
                    return i, stored
            return len(kept), stored

    @asynccontextmanager
    async def _session(self, peer: str, stream: ByteStream) -> AsyncIterator[_Session]:
        """Turns every way a conversation can fail into ``session.error``, tells the peer
        when it is to blame, and always closes the stream. Cancellation passes through."""
        session = _Session()
        try:
            yield session
        except ReplicationError as exc:
            session.error = str(exc)
        except ProtocolError as exc:
            session.error = f"protocol error: {exc}"
            await self._abort(stream, session.conn, error_code(exc), str(exc))
        except MemoryStoreError as exc:
            session.error = f"memory store failed: {exc}"
            await self._abort(stream, session.conn, ERR_INTERNAL, "memory store failed")
        except trio.TooSlowError:
            session.error = f"no progress within {self.io_timeout} s"
        except _STREAM_ERRORS as exc:
            session.error = f"stream failed: {exc!r}"
        finally:
            await self._close(stream)
        if session.error is not None:
            log.warning("memsync with %s failed: %s", peer, session.error)

    async def _read(self, stream: ByteStream) -> bytes:
        with trio.fail_after(self.io_timeout):
            return await stream.read(_READ_SIZE)

    async def _flush(self, stream: ByteStream, conn: SyncClient | SyncServer) -> None:
        data = conn.data_to_send()
        if data:
            with trio.fail_after(self.io_timeout):
                await stream.write(data)

    async def _abort(
        self, stream: ByteStream, conn: SyncClient | SyncServer | None, code: str, message: str
    ) -> None:
        """Best effort: the peer may be gone already, and we are hanging up anyway."""
        if conn is None:
            return
        conn.abort(code, message)
        with suppress(trio.TooSlowError, *_STREAM_ERRORS):
            await self._flush(stream, conn)

    async def _close(self, stream: ByteStream) -> None:
        # Shielded so that a cancelled sync still releases its stream.
        deadline = trio.current_time() + self.io_timeout
        with trio.CancelScope(deadline=deadline, shield=True), suppress(*_STREAM_ERRORS):
            await stream.close()

    @staticmethod
    def _log_rejected(peer: str, reasons: Sequence[str]) -> int:
        for reason in reasons:
            log.warning("dropped record from %s: %s", peer, reason)
        return len(reasons)

    @staticmethod
    def _sampled(high_water: Mapping[str, int]) -> dict[str, int]:
        """At most MAX_AUTHORS marks. A larger mesh sends a fresh random sample each time,
        so successive syncs still cover every author."""
        if len(high_water) <= MAX_AUTHORS:
            return dict(high_water)
        return dict(random.sample(sorted(high_water.items()), MAX_AUTHORS))
