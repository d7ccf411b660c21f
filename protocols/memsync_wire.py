"""The messages of memsync (``/meshnode/memsync/1.0.0``) and of knowledge announcements:
their types, limits, error codes, and how they become bytes and back.

The conversation they make up, and its state machines, are :mod:`protocols.memsync`, which
re-exports everything here: import from there.

Every frame is length-prefixed msgpack ``{"v": 1, "t": <type>, ...}``. Batches carry record
wire dicts, not records: each is verified on its own so one bad record costs only itself and
what follows it, never the whole batch. A knowledge announcement (one new record, or a batch
of one author's new records in seq order) shares the message format.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from itertools import pairwise
from typing import Any, ClassVar

from protocols.codec import MAX_FRAME, Fields, encode_frame, pack, unpack
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
#: Records in one batched announcement, and its size (a GossipSub RPC carries 1 MiB).
MAX_ANNOUNCED = 256
MAX_ANNOUNCEMENTS = 512 * 1024
#: Bytes of a batch (a sync Batch frame, a batched announcement) besides its records: type,
#: author, list and map headers.
BATCH_OVERHEAD = 256

ERR_WRONG_TENANT = "wrong_tenant"
ERR_PROTOCOL = "protocol"
ERR_INTERNAL = "internal"
#: The server refuses to serve more to this peer for now (its sync budget is spent).
ERR_BUSY = "busy"


class UnexpectedMessage(DecodeError):
    """The peer sent a well-formed message that is not allowed at this point."""


class WrongTenant(Rejected):
    """The peer syncs another tenant; its memory must not mix with ours."""


class OverBudget(Rejected):
    """A well-signed record the receiver will not take now: its author is over the
    receiver's budget. Not the relaying peer's fault, so not evidence against it."""


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


def encode_announcements(records: Sequence[MemoryRecord]) -> list[bytes]:
    """Knowledge-gossip bodies announcing ``records`` (one author's, in seq order): as few
    as the limits allow, each a single announcement or a batch."""
    bodies: list[bytes] = []
    batch: list[dict[str, Any]] = []
    size = BATCH_OVERHEAD

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
            batch, size = [], BATCH_OVERHEAD
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
