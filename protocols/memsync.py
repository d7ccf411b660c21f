"""Memory sync: anti-entropy between two peers over ``/meshnode/memsync/1.0.0``.

The client opens the stream; the conversation is strictly one message at a time::

    client → Summary(tenant, its marks)
    server → Summary(tenant, its marks)          or Error(wrong_tenant or busy), and the end
    client → Pull(author, after_seq, limit)      only for authors where the server is ahead
    server → Batch(author, records, done)        ... repeated until nothing is missing
    client → Bye

**Positions.** An author's sequence is a line of positions 1, 2, 3, ... Each is accounted
for by a record the author signed: the record with that seq, or the (version 2) tombstone
that *frees* it (see :mod:`protocols.records`: the seq of the record it deleted). A node's
mark for an author is the end of the unbroken run of positions it accounts for, so a map of
author → mark summarises what it holds. That makes sync idempotent (positions at or below
the mark are never asked for) and resumable (the next sync starts from the new marks).

A Batch answers a Pull with one entry per position, in order: the record at that seq, or
the tombstone freeing it (a tombstone may thus come twice: once for the seq it frees, once
for its own). The client accepts an entry only if it accounts for the next position, so a
server cannot skip a record it withholds: the batch stops at the gap, the mark stays before
it, and the record is still wanted (from the next peer, or its author's announcement).
Signatures keep the server from forging or altering anything; it can only stop early.

After each batch the client waits for :meth:`SyncClient.applied`: it never asks for more of
an author than its caller managed to keep (a store failing on one record, or an author over
its budget, stops that author for this sync; the next sync asks again).

The messages themselves, their limits and their encoding are :mod:`protocols.memsync_wire`
(re-exported here, with the knowledge announcement that shares their format: one new
record, or a batch of one author's new records in seq order).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, auto
from itertools import islice
from typing import Any, Generic, TypeVar

from protocols.codec import MAX_FRAME, FrameDecoder, pack
from protocols.envelope import validate_network_id
from protocols.errors import DecodeError, ProtocolError
from protocols.memsync_wire import (
    BATCH_OVERHEAD,
    ERR_BUSY,
    ERR_INTERNAL,
    ERR_PROTOCOL,
    ERR_WRONG_TENANT,
    MAX_ANNOUNCED,
    MAX_ANNOUNCEMENT,
    MAX_ANNOUNCEMENTS,
    MAX_AUTHORS,
    MAX_BATCH,
    MAX_ERROR_LEN,
    PROTOCOL_ID,
    VERSION,
    Batch,
    Bye,
    Error,
    Message,
    OverBudget,
    Pull,
    Summary,
    UnexpectedMessage,
    WrongTenant,
    decode_announcement,
    decode_announcements,
    decode_message,
    encode_announcement,
    encode_announcements,
    encode_message,
    error_code,
)
from protocols.records import MemoryRecord, record_from_wire, record_to_wire

__all__ = [
    "BATCH_OVERHEAD", "ERR_BUSY", "ERR_INTERNAL", "ERR_PROTOCOL", "ERR_WRONG_TENANT",
    "MAX_ANNOUNCED", "MAX_ANNOUNCEMENT", "MAX_ANNOUNCEMENTS", "MAX_AUTHORS", "MAX_BATCH",
    "MAX_ERROR_LEN", "PROTOCOL_ID", "VERSION", "Batch", "Bye", "ClientState", "Closed", "Error",
    "Message", "OverBudget", "Pull", "RecordsReceived", "ServerState", "Summary", "SyncClient",
    "SyncServer", "SyncStateError", "UnexpectedMessage", "WrongTenant", "decode_announcement",
    "decode_announcements", "decode_message", "encode_announcement", "encode_announcements",
    "encode_message", "error_code",
]


class SyncStateError(RuntimeError):
    """This side called a method its protocol state does not allow (a bug, not the peer)."""


@dataclass(frozen=True, slots=True)
class RecordsReceived:
    """A batch, checked: ``records`` account for the author's next positions, in order,
    ready to store; ``rejected`` explains the entry that broke the run (the rest of the
    batch is skipped). Answer it with :meth:`SyncClient.applied`."""

    author: str
    records: tuple[MemoryRecord, ...]
    rejected: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Closed:
    """The peer said Bye or closed its side of the stream."""


_E = TypeVar("_E")


class _Connection(ABC, Generic[_E]):
    """Framing, outgoing buffer and the end of a conversation, shared by both roles;
    ``_E`` is what the role's own :meth:`_handle` turns messages into."""

    def __init__(self, tenant: str, max_frame: int) -> None:
        self.tenant = validate_network_id(tenant)
        self._max_frame = max_frame
        self._frames = FrameDecoder(max_frame)
        self._out = bytearray()
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once the conversation is over, for whatever reason."""
        return self._closed

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def abort(self, code: str, message: str) -> None:
        """End the conversation, telling the peer why unless it is already over."""
        if not self._closed:
            self._send(Error(code, message[:MAX_ERROR_LEN]))
            self._closed = True

    def receive_data(self, data: bytes) -> list[_E | Error | Closed]:
        """Feed bytes from the peer (b"" when it closed its side); returns the events.

        Raises ProtocolError for anything the peer got wrong; then call :meth:`abort`.
        """
        if not data:
            if self._frames.pending:
                raise DecodeError("memsync: stream ended inside a frame")
            was_open, self._closed = not self._closed, True
            return [Closed()] if was_open else []
        self._frames.feed(data)
        events: list[_E | Error | Closed] = []
        for frame in self._frames.frames():
            msg = decode_message(frame, max_size=self._max_frame)
            if self._closed:
                raise UnexpectedMessage(f"memsync: {msg.TYPE} after the conversation ended")
            if isinstance(msg, Error):
                self._closed = True
                events.append(msg)
            else:
                events.append(self._handle(msg))
        return events

    @abstractmethod
    def _handle(self, msg: Message) -> _E | Closed:
        """One decoded message of the peer, in this role's state machine."""

    def _send(self, msg: Message) -> None:
        self._out += encode_message(msg, max_frame=self._max_frame)

    def _summary(self, high_water: Mapping[str, int]) -> Summary:
        if len(high_water) > MAX_AUTHORS:
            raise ValueError(f"a summary holds at most {MAX_AUTHORS} authors")
        return Summary(self.tenant, dict(high_water))

    def _check_tenant(self, summary: Summary) -> None:
        if summary.tenant != self.tenant:
            raise WrongTenant(f"peer syncs tenant {summary.tenant!r}, this node {self.tenant!r}")

    def _unexpected(self, msg: Message, state: Enum) -> UnexpectedMessage:
        return UnexpectedMessage(f"memsync: {msg.TYPE} is not allowed in state {state.name}")


class ClientState(Enum):
    AWAIT_SUMMARY = auto()
    PULLING = auto()
    #: A batch was handed out; waiting for :meth:`SyncClient.applied`.
    APPLYING = auto()
    DONE = auto()


class SyncClient(_Connection[Summary | RecordsReceived]):
    """The pulling side. Its Summary is queued at once; after the server's Summary it asks,
    one bounded Pull at a time, for every author where the server is ahead, then says Bye.
    Feed it with :meth:`receive_data`, store the records of each
    :class:`RecordsReceived` and report with :meth:`applied`, and send
    :meth:`data_to_send` after each of those calls.
    """

    def __init__(
        self,
        tenant: str,
        high_water: Mapping[str, int],
        *,
        batch_size: int = MAX_BATCH,
        max_frame: int = MAX_FRAME,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be in 1..{MAX_BATCH}")
        super().__init__(tenant, max_frame)
        self.state = ClientState.AWAIT_SUMMARY
        self._batch_size = batch_size
        self._have = dict(high_water)
        self._theirs: dict[str, int] = {}
        self._todo: list[str] = []
        self._pending: Pull | None = None
        self._handed: RecordsReceived | None = None
        self._handed_done = False
        # The server reads our marks only to see how far behind it is; a part is enough.
        self._send(self._summary(dict(islice(high_water.items(), MAX_AUTHORS))))

    @property
    def finished(self) -> bool:
        """True once every pull this sync planned was made and Bye was sent."""
        return self.state is ClientState.DONE

    def behind(self) -> dict[str, int]:
        """Per author, how many records the server advertised that we still lack."""
        return {
            author: theirs - self._have.get(author, 0)
            for author, theirs in self._theirs.items()
            if theirs > self._have.get(author, 0)
        }

    def _handle(self, msg: Message) -> Summary | RecordsReceived:
        if self.state is ClientState.AWAIT_SUMMARY and isinstance(msg, Summary):
            self._check_tenant(msg)
            self._theirs = dict(msg.high_water)
            self._todo = sorted(self.behind())
            self.state = ClientState.PULLING
            self._request_next()
            return msg
        pending = self._pending
        if pending is not None and isinstance(msg, Batch):
            if msg.author != pending.author or len(msg.records) > pending.limit:
                raise UnexpectedMessage("memsync: batch does not answer the pull")
            self._pending = None
            event = self._check_batch(msg)
            self._handed = event
            self._handed_done = bool(event.rejected) or msg.done or not event.records
            self.state = ClientState.APPLYING
            return event
        raise self._unexpected(msg, self.state)

    def applied(self, kept: int | None = None) -> None:
        """Report how many of the last batch's records (a prefix, in order) were stored:
        all of them if ``kept`` is None. The mark moves past those only; with fewer, the
        author is left for the next sync. Then the next Pull (or Bye) is queued."""
        event = self._handed
        if self.state is not ClientState.APPLYING or event is None:
            raise SyncStateError(f"no batch to acknowledge in state {self.state.name}")
        count = len(event.records) if kept is None else kept
        if not 0 <= count <= len(event.records):
            raise SyncStateError(f"kept {count} of {len(event.records)} records")
        self._have[event.author] = self._have.get(event.author, 0) + count
        if self._handed_done or count < len(event.records):
            self._todo.remove(event.author)
        self._handed = None
        self.state = ClientState.PULLING
        self._request_next()

    def _check_batch(self, batch: Batch) -> RecordsReceived:
        accepted: list[MemoryRecord] = []
        position = self._have.get(batch.author, 0) + 1
        for wire in batch.records:
            try:
                record = record_from_wire(wire)
                if record.author != batch.author or record.tenant != self.tenant:
                    raise DecodeError(
                        f"record {record.id} is {record.author}#{record.seq} of "
                        f"{record.tenant!r}; expected {batch.author} of {self.tenant!r}"
                    )
                if position not in (record.seq, record.frees):
                    raise DecodeError(
                        f"{batch.author}#{record.seq} does not account for #{position}: a "
                        "record the peer did not send and no tombstone explains"
                    )
            except ProtocolError as exc:
                # Taking later records would skip this position for good.
                return RecordsReceived(batch.author, tuple(accepted), (str(exc),))
            accepted.append(record)
            position += 1
        return RecordsReceived(batch.author, tuple(accepted))

    def _request_next(self) -> None:
        while self._todo:
            author = self._todo[0]
            have, theirs = self._have.get(author, 0), self._theirs[author]
            if have < theirs:
                self._pending = Pull(author, have, min(self._batch_size, theirs - have))
                self._send(self._pending)
                return
            self._todo.pop(0)
        self._send(Bye())
        self.state = ClientState.DONE
        self._closed = True


class ServerState(Enum):
    AWAIT_SUMMARY = auto()
    SUMMARY_DUE = auto()
    IDLE = auto()
    BATCH_DUE = auto()


class SyncServer(_Connection[Summary | Pull]):
    """The serving side: answer the client's Summary with :meth:`send_summary` and each
    :class:`Pull` event with :meth:`send_batch`, sending :meth:`data_to_send` after each.
    """

    def __init__(self, tenant: str, *, max_frame: int = MAX_FRAME) -> None:
        super().__init__(tenant, max_frame)
        self.state = ServerState.AWAIT_SUMMARY
        self._pull: Pull | None = None

    def _handle(self, msg: Message) -> Summary | Pull | Closed:
        if self.state is ServerState.AWAIT_SUMMARY and isinstance(msg, Summary):
            self._check_tenant(msg)
            self.state = ServerState.SUMMARY_DUE
            return msg
        if self.state is ServerState.IDLE and isinstance(msg, Pull):
            self._pull = msg
            self.state = ServerState.BATCH_DUE
            return msg
        if self.state is ServerState.IDLE and isinstance(msg, Bye):
            self._closed = True
            return Closed()
        raise self._unexpected(msg, self.state)

    def send_summary(self, high_water: Mapping[str, int]) -> None:
        if self.state is not ServerState.SUMMARY_DUE or self._closed:
            raise SyncStateError(f"no summary is due in state {self.state.name}")
        self._send(self._summary(high_water))
        self.state = ServerState.IDLE

    def send_batch(self, records: Sequence[MemoryRecord], *, more: bool) -> None:
        """Answer the pending pull with ``records``: one entry per position after the
        pull's ``after_seq``, in order (the record with that seq, or the tombstone freeing
        it); stop before a position the store cannot account for.

        ``more`` says whether the store holds positions past these. The batch is cut short,
        and marked not done, where the frame would outgrow the limit.
        """
        pull = self._pull
        if pull is None or self._closed:
            raise SyncStateError(f"no pull to answer in state {self.state.name}")
        wires: list[dict[str, Any]] = []
        size = BATCH_OVERHEAD
        for record in records[: pull.limit]:
            wire = record_to_wire(record)
            size += len(pack(wire))
            if size > self._max_frame:
                break
            wires.append(wire)
        more = more or len(records) > len(wires)
        self._send(Batch(pull.author, tuple(wires), done=not more))
        self._pull = None
        self.state = ServerState.IDLE
