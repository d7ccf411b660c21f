"""Memory sync: anti-entropy between two peers over ``/meshnode/memsync/1.0.0``.

The client opens the stream; the conversation is strictly one message at a time::

    client → Summary(tenant, its high water)
    server → Summary(tenant, its high water)     or Error(wrong_tenant), and the end
    client → Pull(author, after_seq, limit)      only for authors where the server is ahead
    server → Batch(author, records, done)        ... repeated until nothing is missing
    client → Bye

Nodes apply an author's records in seq order, so a map of author → highest seq is a
complete summary of what a node holds. That makes sync idempotent (records at or below the
mark are never asked for) and resumable (after a dropped connection the next sync starts
from the new marks; nothing else needs remembering). A batch may skip seqs: those are
records their author deleted (the tombstone, later in the sequence, made the store drop
them). Nothing in a tombstone names the seq it frees, so a client cannot tell such a gap
from a record the server withholds; it trusts the server's order, and signatures keep the
server from forging or altering anything.

Every frame is length-prefixed msgpack ``{"v": 1, "t": <type>, ...}``. Batches carry record
wire dicts, not records: each is verified on its own so one bad record costs only itself and
what follows it, never the whole batch.

The knowledge gossip announcement (one new record, or a batch of one author's new records
in seq order) shares the message format.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from enum import Enum, auto
from itertools import islice, pairwise
from typing import Any, ClassVar, Generic, TypeVar

from protocols.codec import MAX_FRAME, Fields, FrameDecoder, encode_frame, pack, unpack
from protocols.envelope import validate_network_id
from protocols.errors import DecodeError, ProtocolError, Rejected
from protocols.peerid import MAX_PEER_ID_LEN, validate_peer_id
from protocols.records import MAX_SEQ, MemoryRecord, record_from_wire, record_to_wire

PROTOCOL_ID = "/meshnode/memsync/1.0.0"
VERSION = 1
#: Authors in one summary; a node with more sends a sample (see memory.replication).
MAX_AUTHORS = 8192
#: Records in one batch; a batch is also cut short so its frame stays under the limit.
MAX_BATCH = 256
MAX_ERROR_LEN = 512
#: One announced record: the largest valid one (32 KiB of text, 32 meta entries of up to
#: 512 characters, all 4-byte UTF-8) is about 110 KB.
MAX_ANNOUNCEMENT = 128 * 1024
# Bytes of a Batch frame besides its records (type, author, list and map headers).
_BATCH_OVERHEAD = 256

ERR_WRONG_TENANT = "wrong_tenant"
ERR_PROTOCOL = "protocol"
ERR_INTERNAL = "internal"


class UnexpectedMessage(DecodeError):
    """The peer sent a well-formed message that is not allowed at this point."""


class WrongTenant(Rejected):
    """The peer syncs another tenant; its memory must not mix with ours."""


class SyncStateError(RuntimeError):
    """This side called a method its protocol state does not allow (a bug, not the peer)."""


def error_code(exc: ProtocolError) -> str:
    """The Error code that tells the peer why we are hanging up on it."""
    return ERR_WRONG_TENANT if isinstance(exc, WrongTenant) else ERR_PROTOCOL


@dataclass(frozen=True, slots=True)
class Summary:
    TYPE: ClassVar[str] = "summary"
    tenant: str
    high_water: dict[str, int]


@dataclass(frozen=True, slots=True)
class Pull:
    TYPE: ClassVar[str] = "pull"
    author: str
    after_seq: int
    limit: int


@dataclass(frozen=True, slots=True)
class Batch:
    TYPE: ClassVar[str] = "batch"
    author: str
    records: tuple[dict[str, Any], ...]
    done: bool


@dataclass(frozen=True, slots=True)
class Error:
    TYPE: ClassVar[str] = "error"
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Bye:
    TYPE: ClassVar[str] = "bye"


Message = Summary | Pull | Batch | Error | Bye


def _tenant(f: Fields) -> str:
    return validate_network_id(f.str("tenant", min_len=1, max_len=64))


def _author(value: str, what: str) -> str:
    try:
        return validate_peer_id(value)
    except ValueError as exc:  # 32 bytes that are not a usable Ed25519 key
        raise DecodeError(f"{what}: {exc}") from None


def _decode_summary(f: Fields) -> Summary:
    tenant = _tenant(f)
    raw = f.map("high_water", max_items=MAX_AUTHORS)
    marks = Fields(raw, f"{f.what}.high_water")
    return Summary(tenant, {_author(a, marks.what): marks.int(a, lo=1, hi=MAX_SEQ) for a in raw})


def _decode_pull(f: Fields) -> Pull:
    author = _author(f.str("author", max_len=MAX_PEER_ID_LEN), f.what)
    return Pull(author, f.int("after_seq", hi=MAX_SEQ), f.int("limit", lo=1, hi=MAX_BATCH))


def _decode_batch(f: Fields) -> Batch:
    author = _author(f.str("author", max_len=MAX_PEER_ID_LEN), f.what)
    records = f.list("records", max_items=MAX_BATCH)
    if not all(isinstance(r, dict) for r in records):
        raise DecodeError(f"{f.what}.records: every record must be a map")
    return Batch(author, tuple(records), f.bool("done"))


def _decode_error(f: Fields) -> Error:
    return Error(f.str("code", min_len=1, max_len=32), f.str("message", max_len=MAX_ERROR_LEN))


_DECODERS: dict[str, Callable[[Fields], Message]] = {
    Summary.TYPE: _decode_summary,
    Pull.TYPE: _decode_pull,
    Batch.TYPE: _decode_batch,
    Error.TYPE: _decode_error,
    Bye.TYPE: lambda f: Bye(),
}


def _open(data: bytes, *, max_size: int, what: str) -> tuple[str, Fields]:
    """Unpack a message and check its version; return its type and its fields."""
    obj = unpack(data, max_size=max_size)
    f = Fields(obj, what)
    version = f.int("v")
    if version != VERSION:
        raise DecodeError(f"{what}: unsupported version {version} (this node speaks {VERSION})")
    kind = f.str("t", max_len=16)
    return kind, Fields(obj, f"{what}.{kind}")


def _payload(kind: str, body: dict[str, Any]) -> bytes:
    return pack({"v": VERSION, "t": kind, **body})


def encode_message(msg: Message, *, max_frame: int = MAX_FRAME) -> bytes:
    """One length-prefixed frame holding ``msg``."""
    body = {f.name: getattr(msg, f.name) for f in fields(msg)}
    return encode_frame(_payload(msg.TYPE, body), max_frame=max_frame)


def decode_message(payload: bytes, *, max_size: int = MAX_FRAME) -> Message:
    """Decode the payload of one frame. Raises DecodeError."""
    kind, f = _open(payload, max_size=max_size, what="memsync")
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise DecodeError(f"memsync: unknown message type {kind!r}")
    return decoder(f)


_ANNOUNCE = "announce"


def encode_announcement(record: MemoryRecord) -> bytes:
    """The knowledge-gossip body announcing one new record."""
    return _payload(_ANNOUNCE, {"record": record_to_wire(record)})


def decode_announcement(data: bytes, *, max_size: int = MAX_ANNOUNCEMENT) -> MemoryRecord:
    """Decode and verify an announced record. Raises DecodeError or BadSignature."""
    kind, f = _open(data, max_size=max_size, what="announcement")
    if kind != _ANNOUNCE:
        raise DecodeError(f"announcement: unexpected message type {kind!r}")
    return record_from_wire(f.map("record", max_items=32))


_ANNOUNCE_BATCH = "announce_batch"
#: Records in one batched announcement, and its size (a GossipSub RPC carries 1 MiB).
MAX_ANNOUNCED = 256
MAX_ANNOUNCEMENTS = 512 * 1024


def encode_announcements(records: Sequence[MemoryRecord]) -> list[bytes]:
    """Knowledge-gossip bodies announcing ``records`` (one author's, in seq order): as few
    as the limits allow, each a single announcement or a batch."""
    bodies: list[bytes] = []
    batch: list[dict[str, Any]] = []
    size = _BATCH_OVERHEAD

    def close() -> None:
        if len(batch) == 1:
            bodies.append(_payload(_ANNOUNCE, {"record": batch[0]}))
        elif batch:
            bodies.append(_payload(_ANNOUNCE_BATCH, {"records": list(batch)}))

    for record in records:
        wire = record_to_wire(record)
        record_size = len(pack(wire))
        if batch and (len(batch) >= MAX_ANNOUNCED or size + record_size > MAX_ANNOUNCEMENTS):
            close()
            batch, size = [], _BATCH_OVERHEAD
        batch.append(wire)
        size += record_size
    close()
    return bodies


def decode_announcements(data: bytes) -> tuple[MemoryRecord, ...]:
    """Decode and verify an announcement, single or batched: one author's records with
    increasing seqs. Raises DecodeError or BadSignature."""
    kind, f = _open(data, max_size=MAX_ANNOUNCEMENTS, what="announcement")
    if kind == _ANNOUNCE:
        if len(data) > MAX_ANNOUNCEMENT:
            raise DecodeError(f"announcement of {len(data)} bytes; the limit is "
                              f"{MAX_ANNOUNCEMENT}")
        return (record_from_wire(f.map("record", max_items=32)),)
    if kind != _ANNOUNCE_BATCH:
        raise DecodeError(f"announcement: unexpected message type {kind!r}")
    wires = f.list("records", max_items=MAX_ANNOUNCED)
    if not wires or not all(isinstance(w, dict) for w in wires):
        raise DecodeError("announcement: records must be a non-empty list of maps")
    records = tuple(record_from_wire(w) for w in wires)
    first = records[0]
    for before, after in pairwise(records):
        if after.author != first.author or after.seq <= before.seq:
            raise DecodeError("announcement: a batch is one author's records in seq order")
    return records


@dataclass(frozen=True, slots=True)
class RecordsReceived:
    """A batch, checked: ``records`` continue the author's sequence, ready to store;
    ``rejected`` explains the record that broke it (the rest of the batch is skipped)."""

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
    DONE = auto()


class SyncClient(_Connection[Summary | RecordsReceived]):
    """The pulling side. Its Summary is queued at once; after the server's Summary it asks,
    one bounded Pull at a time, for every author where the server is ahead, then says Bye.
    Feed it with :meth:`receive_data`, store the records of each
    :class:`RecordsReceived`, and send :meth:`data_to_send` after every feed.
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
            if event.rejected or msg.done or not event.records:
                self._todo.remove(msg.author)
            self._request_next()
            return event
        raise self._unexpected(msg, self.state)

    def _check_batch(self, batch: Batch) -> RecordsReceived:
        accepted: list[MemoryRecord] = []
        for wire in batch.records:
            after = self._have.get(batch.author, 0)
            try:
                record = record_from_wire(wire)
                if (
                    record.author != batch.author
                    or record.tenant != self.tenant
                    or (record.seq <= after)
                ):
                    raise DecodeError(
                        f"record {record.id} is {record.author}#{record.seq} of "
                        f"{record.tenant!r}; expected {batch.author} after #{after}"
                    )
            except ProtocolError as exc:
                # Taking later records would skip this one for good: our mark would pass it.
                return RecordsReceived(batch.author, tuple(accepted), (str(exc),))
            accepted.append(record)
            self._have[batch.author] = record.seq
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
        """Answer the pending pull with ``records`` (the author's next ones, in seq order).

        ``more`` says whether the store holds records past these. The batch is cut short,
        and marked not done, where the frame would outgrow the limit.
        """
        pull = self._pull
        if pull is None or self._closed:
            raise SyncStateError(f"no pull to answer in state {self.state.name}")
        wires: list[dict[str, Any]] = []
        size = _BATCH_OVERHEAD
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
