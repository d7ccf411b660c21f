"""Signed, content-addressed memory records: what nodes store and replicate.

A record's ``id`` is the hex SHA-256 of its canonical encoding (every field except ``id`` and
``signature``), so two nodes holding the same id hold the same content, and replication is
idempotent by construction. The author signs ``_DOMAIN + id``; any node can check a record
it received from a third party because the author's key is inside the author's peer ID.

Replicas carry text and metadata, never vectors: each node embeds with its own embedder.

A tombstone is a record of kind :data:`TOMBSTONE` whose ``meta["deletes"]`` names the id it
deletes and whose ``meta["frees"]`` names the seq that record had. It is itself a record
(signed, sequenced) so deletions replicate like anything else. Whether the tombstone's author
may delete the target is decided by whoever holds the target (the store), since the target is
not part of the tombstone.

**Versions.** A record's version is part of its canonical encoding (so of its id and
signature) and is implied by its content; nothing else stores it:

- version 1: every ordinary record (its format is unchanged, so nodes of any version read
  it), and the tombstones of earlier meshnode versions, whose meta is ``{"deletes": id}``.
- version 2: a tombstone whose meta is ``{"deletes": id, "frees": seq}``, with
  ``1 <= frees < seq``. ``frees`` is signed with the rest, so a tombstone is the author's
  own statement that its sequence has no record at ``frees`` any more: the one thing a
  replica needs to tell a deleted record from one a peer withholds (see
  :mod:`protocols.memsync`). :func:`new_tombstone` always makes version 2.

Old records still verify: their id is re-derived with version 1, exactly as before. A node
of an earlier version refuses version-2 tombstones ("unsupported version"), so a mesh
should upgrade every node together; until then old nodes do not apply new deletions.

All validation failures raise :class:`DecodeError`; a signature that does not verify raises
:class:`BadSignature`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from protocols.codec import Fields, pack
from protocols.envelope import validate_network_id
from protocols.errors import BadSignature, DecodeError
from protocols.peerid import MAX_PEER_ID_LEN, Signer, validate_peer_id, verify

COLLECTIONS = ("expert_knowledge", "collaboration_history", "problem_solutions")
TOMBSTONE = "tombstone"

#: The newest record format (see the module docstring); version 1 is still read and written.
VERSION = 2
VERSIONS = (1, 2)
_DOMAIN = b"meshnode/record/v1\0"
MAX_TEXT_BYTES = 32 * 1024
MAX_KIND_LEN = 32
MAX_AGENT_LEN = 64
MAX_META_ENTRIES = 32
MAX_META_KEY_LEN = 64
MAX_META_VALUE_LEN = 512
# Milvus stores seq as INT64 and created as DOUBLE; year ~5138 is far enough.
MAX_SEQ = 2**63 - 1
MAX_CREATED = 1e11
_INT64 = (-(2**63), 2**63 - 1)
SIGNATURE_LEN = 64
ID_LEN = 64

MetaValue = str | int | float | bool


@dataclass(frozen=True, slots=True)
class MemoryRecord:
    id: str
    collection: str
    tenant: str
    text: str
    kind: str
    author: str
    agent: str
    created: float
    seq: int
    meta: dict[str, MetaValue]
    signature: bytes

    @property
    def is_tombstone(self) -> bool:
        return self.kind == TOMBSTONE

    @property
    def deletes(self) -> str | None:
        """The id a tombstone deletes; None for an ordinary record."""
        target = self.meta.get("deletes") if self.is_tombstone else None
        return target if isinstance(target, str) else None

    @property
    def frees(self) -> int | None:
        """The seq a (version 2) tombstone frees: its target's; None otherwise."""
        freed = self.meta.get("frees") if self.is_tombstone else None
        return freed if isinstance(freed, int) and not isinstance(freed, bool) else None

    @property
    def version(self) -> int:
        return version_of(self.kind, self.meta)

    @property
    def positions(self) -> tuple[int, ...]:
        """The places of its author's sequence this record accounts for: its own seq and,
        for a version-2 tombstone, the seq it frees."""
        freed = self.frees
        return (self.seq,) if freed is None else (freed, self.seq)


def version_of(kind: str, meta: dict[str, MetaValue]) -> int:
    """The record version that content is written in (see the module docstring)."""
    return 2 if kind == TOMBSTONE and "frees" in meta else 1


def _utf8_len(value: str, what: str) -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise DecodeError(f"{what}: not encodable as UTF-8") from None


def _check_str(value: Any, what: str, *, max_len: int, min_len: int = 0) -> str:
    if not isinstance(value, str):
        raise DecodeError(f"{what}: expected a string, got {type(value).__name__}")
    if not min_len <= len(value) <= max_len:
        raise DecodeError(f"{what}: length {len(value)} outside {min_len}..{max_len}")
    _utf8_len(value, what)
    return value


def is_record_id(value: Any) -> bool:
    """Whether ``value`` has the form of a record id (64 lowercase hex digits)."""
    return (
        isinstance(value, str)
        and len(value) == ID_LEN
        and all(c in "0123456789abcdef" for c in value)
    )


def _check_meta(meta: Any) -> dict[str, MetaValue]:
    if not isinstance(meta, dict):
        raise DecodeError(f"record.meta: expected a map, got {type(meta).__name__}")
    if len(meta) > MAX_META_ENTRIES:
        raise DecodeError(f"record.meta: {len(meta)} entries exceeds {MAX_META_ENTRIES}")
    for key, value in meta.items():
        _check_str(key, "record.meta key", min_len=1, max_len=MAX_META_KEY_LEN)
        what = f"record.meta[{key!r}]"
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            if not _INT64[0] <= value <= _INT64[1]:
                raise DecodeError(f"{what}: integer outside the 64-bit range")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise DecodeError(f"{what}: number must be finite")
        elif isinstance(value, str):
            _check_str(value, what, max_len=MAX_META_VALUE_LEN)
        else:
            raise DecodeError(f"{what}: expected str, int, float or bool")
    return dict(meta)


def is_kind(value: Any) -> bool:
    """Whether ``value`` is a valid record kind: 1-32 ASCII letters, digits, '-', '_', '.'."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_KIND_LEN
        and all(c.isascii() and (c.isalnum() or c in "-_.") for c in value)
    )


def _check_kind(value: Any, text: str, meta: dict[str, MetaValue], seq: int) -> str:
    kind = _check_str(value, "record.kind", min_len=1, max_len=MAX_KIND_LEN)
    if not is_kind(kind):
        raise DecodeError(f"record.kind: {kind!r} must be ASCII letters, digits, '-', '_', '.'")
    if kind != TOMBSTONE:
        return kind
    if text != "" or set(meta) - {"frees"} != {"deletes"}:
        raise DecodeError(
            "record: a tombstone has empty text and meta {'deletes': <id>, 'frees': <seq>} only"
        )
    if not is_record_id(meta["deletes"]):
        raise DecodeError("record: a tombstone's meta['deletes'] must be a record id")
    if "frees" in meta:
        freed = meta["frees"]
        if isinstance(freed, bool) or not isinstance(freed, int) or not 1 <= freed < seq:
            raise DecodeError(
                f"record: a tombstone's meta['frees'] must be a seq before its own (#{seq})"
            )
    return kind


def _checked_fields(
    collection: Any,
    tenant: Any,
    text: Any,
    kind: Any,
    author: Any,
    agent: Any,
    created: Any,
    seq: Any,
    meta: Any,
) -> tuple[str, str, str, str, str, str, float, int, dict[str, MetaValue]]:
    if collection not in COLLECTIONS:
        raise DecodeError(f"record.collection: {collection!r} is not one of {COLLECTIONS}")
    validate_network_id(tenant)
    _check_str(text, "record.text", max_len=MAX_TEXT_BYTES)
    if _utf8_len(text, "record.text") > MAX_TEXT_BYTES:
        raise DecodeError(f"record.text: more than {MAX_TEXT_BYTES} bytes of UTF-8")
    _check_str(author, "record.author", min_len=1, max_len=MAX_PEER_ID_LEN)
    try:
        validate_peer_id(author)
    except ValueError as exc:  # a malformed embedded key
        raise DecodeError(f"record.author: {exc}") from None
    _check_str(agent, "record.agent", max_len=MAX_AGENT_LEN)
    if isinstance(created, bool) or not isinstance(created, int | float):
        raise DecodeError("record.created: expected a number")
    created = float(created)
    if not (math.isfinite(created) and 0.0 <= created <= MAX_CREATED):
        raise DecodeError(f"record.created: {created!r} outside 0..{MAX_CREATED}")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ:
        raise DecodeError(f"record.seq: expected an integer in 1..{MAX_SEQ}")
    checked_meta = _check_meta(meta)
    _check_kind(kind, text, checked_meta, seq)
    return collection, tenant, text, kind, author, agent, created, seq, checked_meta


def _record_id(
    collection: str,
    tenant: str,
    text: str,
    kind: str,
    author: str,
    agent: str,
    created: float,
    seq: int,
    meta: dict[str, MetaValue],
) -> str:
    # Sorted meta keys make the encoding independent of dict insertion order.
    canonical = pack(
        [version_of(kind, meta), collection, tenant, text, kind, author, agent, created, seq,
         [[k, meta[k]] for k in sorted(meta)]]
    )
    return hashlib.sha256(canonical).hexdigest()


def _signed_message(record_id: str) -> bytes:
    return _DOMAIN + bytes.fromhex(record_id)


def _build(
    signer: Signer,
    collection: str,
    tenant: str,
    text: str,
    kind: str,
    agent: str,
    created: float,
    seq: int,
    meta: dict[str, MetaValue],
) -> MemoryRecord:
    fields = _checked_fields(collection, tenant, text, kind, signer.peer_id, agent, created,
                             seq, meta)
    record_id = _record_id(*fields)
    return MemoryRecord(record_id, *fields, signature=signer.sign(_signed_message(record_id)))


def new_record(
    signer: Signer,
    *,
    collection: str,
    tenant: str,
    text: str,
    kind: str,
    agent: str,
    created: float,
    seq: int,
    meta: dict[str, MetaValue] | None = None,
) -> MemoryRecord:
    """Create and sign a record; DecodeError if any field is out of bounds."""
    if kind == TOMBSTONE:
        raise DecodeError("use new_tombstone to delete a record")
    return _build(signer, collection, tenant, text, kind, agent, created, seq, meta or {})


def new_tombstone(
    signer: Signer, target: MemoryRecord, *, created: float, seq: int
) -> MemoryRecord:
    """A signed deletion of ``target`` (version 2: it names the seq it frees); only
    ``target``'s author may make one, later in its sequence than ``target``."""
    if signer.peer_id != target.author:
        raise BadSignature(f"only the author {target.author} may delete record {target.id}")
    if target.is_tombstone:
        raise DecodeError("a tombstone cannot be deleted")
    return _build(signer, target.collection, target.tenant, "", TOMBSTONE, target.agent,
                  created, seq, {"deletes": target.id, "frees": target.seq})


def record_to_wire(r: MemoryRecord) -> dict[str, Any]:
    return {
        "v": r.version,
        "id": r.id,
        "collection": r.collection,
        "tenant": r.tenant,
        "text": r.text,
        "kind": r.kind,
        "author": r.author,
        "agent": r.agent,
        "created": r.created,
        "seq": r.seq,
        "meta": dict(r.meta),
        "sig": r.signature,
    }


def _verify_signature(author: str, record_id: str, signature: Any) -> None:
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_LEN:
        raise DecodeError(f"record.signature: expected {SIGNATURE_LEN} bytes")
    try:
        verify(author, _signed_message(record_id), signature)
    except ValueError:  # an author key that does not decode as a curve point
        raise BadSignature(f"record {record_id}: author key of {author} is unusable") from None


def _checked_record(
    record_id: Any, fields: tuple[Any, ...], signature: Any
) -> MemoryRecord:
    checked = _checked_fields(*fields)
    expected = _record_id(*checked)
    if record_id != expected:
        raise DecodeError(f"record id {record_id!r} does not match its content ({expected})")
    _verify_signature(checked[4], expected, signature)
    return MemoryRecord(expected, *checked, signature=signature)


def record_from_wire(obj: Any) -> MemoryRecord:
    """Decode, bound-check, re-derive the id of, and verify a record from a peer."""
    f = Fields(obj, "record")
    version = f.int("v")
    if version not in VERSIONS:
        raise DecodeError(f"record: unsupported version {version} (this node speaks {VERSIONS})")
    record_id = f.str("id", min_len=ID_LEN, max_len=ID_LEN)
    fields = (
        f.str("collection", max_len=64),
        f.str("tenant", max_len=64),
        f.str("text", max_len=MAX_TEXT_BYTES),
        f.str("kind", max_len=MAX_KIND_LEN),
        f.str("author", max_len=MAX_PEER_ID_LEN),
        f.str("agent", max_len=MAX_AGENT_LEN),
        f.float("created", lo=0.0, hi=MAX_CREATED),
        f.int("seq", lo=1, hi=MAX_SEQ),
        f.map("meta", max_items=MAX_META_ENTRIES),
    )
    record = _checked_record(record_id, fields, f.bytes("sig", exact=SIGNATURE_LEN))
    if record.version != version:
        raise DecodeError(f"record: its content is version {record.version}, not {version}")
    return record


def record_to_json(r: MemoryRecord) -> dict[str, Any]:
    """A record as JSON-safe data: the wire form with the signature in hex."""
    wire = record_to_wire(r)
    wire["sig"] = r.signature.hex()
    return wire


def record_from_json(obj: Any) -> MemoryRecord:
    """Decode and verify :func:`record_to_json` output (from a peer: hostile until checked)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("sig"), str):
        raise DecodeError("a record must be an object with a hex 'sig'")
    if len(obj["sig"]) != 2 * SIGNATURE_LEN:
        raise DecodeError(f"record.sig: expected {2 * SIGNATURE_LEN} hex digits")
    try:
        signature = bytes.fromhex(obj["sig"])
    except ValueError:
        raise DecodeError("record.sig is not hex") from None
    return record_from_wire({**obj, "sig": signature})


def verify_record(r: MemoryRecord) -> None:
    """Re-check a record's bounds, id and signature (e.g. one read back from storage)."""
    _checked_record(
        r.id,
        (r.collection, r.tenant, r.text, r.kind, r.author, r.agent, r.created, r.seq, r.meta),
        r.signature,
    )
