"""Delegation between agents: what an agent that consults another sends along, sans-IO.

When an agent asks another agent of the mesh a sub-question, the task's message carries,
under the metadata key :data:`DELEGATION_KEY`:

    {"depth": 1,                                   # this ask is the n-th hop of consulting
     "chain": [{"peer": "12D3…", "agent": "python-expert"}, …],   # who asked, in order
     "shared": [{"record": {…signed memory record…}, "score": 0.41, "by": "python-expert"}]}

``shared`` is what the earlier agents retrieved, so that the consulted one can reuse it
instead of searching again. The receiver trusts none of it: every record is re-derived
and its author's signature verified (:func:`decode_delegation`), so a peer cannot slip in
passages in another author's name; records that fail are dropped and counted. The scores
are the sender's and are only shown; a receiver ranks records with its own embedder.

Everything is bounded: :data:`MAX_DEPTH` hops, :data:`MAX_SHARED` records and
:data:`MAX_SHARED_BYTES` of record text per message (records that do not fit are left out
by :func:`encode_delegation`, never cut: a cut record would no longer verify).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from protocols.errors import DecodeError, ProtocolError
from protocols.peerid import MAX_PEER_ID_LEN
from protocols.records import (
    MAX_AGENT_LEN,
    MemoryRecord,
    record_from_wire,
    record_to_wire,
)

DELEGATION_KEY = "meshnode/delegation"
#: The deepest consulting chain: an agent asked at this depth cannot consult further.
MAX_DEPTH = 4
MAX_SHARED = 16
MAX_SHARED_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Hop:
    """One agent in a consulting chain: the agent ``agent`` on the node ``peer``."""

    peer: str
    agent: str


@dataclass(frozen=True, slots=True)
class Shared:
    """A record an earlier agent retrieved, with the score it had there."""

    record: MemoryRecord
    score: float
    by: str


@dataclass(frozen=True, slots=True)
class Delegation:
    depth: int
    chain: tuple[Hop, ...]
    shared: tuple[Shared, ...] = ()
    #: Shared records dropped on receipt: malformed, or a signature that does not verify.
    rejected: int = 0


def encode_delegation(delegation: Delegation) -> dict[str, Any]:
    """The metadata value of ``delegation``; records beyond the bounds are left out."""
    shared: list[dict[str, Any]] = []
    room = MAX_SHARED_BYTES
    for item in delegation.shared[:MAX_SHARED]:
        size = len(item.record.text.encode("utf-8"))
        if size > room:
            continue
        room -= size
        wire = record_to_wire(item.record)
        wire["sig"] = item.record.signature.hex()  # metadata is JSON-able: no bytes
        score = item.score if math.isfinite(item.score) else 0.0
        shared.append({"record": wire, "score": round(score, 4), "by": item.by[:MAX_AGENT_LEN]})
    return {
        "depth": delegation.depth,
        "chain": [{"peer": h.peer, "agent": h.agent} for h in delegation.chain[:MAX_DEPTH]],
        "shared": shared,
    }


def _text(value: Any, what: str, max_len: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= max_len:
        raise DecodeError(f"{what}: expected a string of 1 to {max_len} characters")
    return value


def decode_delegation(value: Any) -> Delegation:
    """Check a received delegation; DecodeError if its shape is wrong. Shared records that
    do not verify are dropped and counted in ``rejected``, not an error: the question
    stands without them."""
    if not isinstance(value, dict):
        raise DecodeError("delegation: expected a map")
    depth = value.get("depth")
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= MAX_DEPTH:
        raise DecodeError(f"delegation.depth: expected an integer in 1..{MAX_DEPTH}")
    chain_raw = value.get("chain")
    if not isinstance(chain_raw, list) or not 0 < len(chain_raw) <= MAX_DEPTH:
        raise DecodeError(f"delegation.chain: expected 1 to {MAX_DEPTH} hops")
    chain = []
    for i, hop in enumerate(chain_raw):
        if not isinstance(hop, dict):
            raise DecodeError(f"delegation.chain[{i}]: expected a map")
        chain.append(Hop(_text(hop.get("peer"), f"delegation.chain[{i}].peer", MAX_PEER_ID_LEN),
                         _text(hop.get("agent"), f"delegation.chain[{i}].agent", MAX_AGENT_LEN)))
    shared_raw = value.get("shared", [])
    if not isinstance(shared_raw, list) or len(shared_raw) > MAX_SHARED:
        raise DecodeError(f"delegation.shared: expected at most {MAX_SHARED} records")
    shared: list[Shared] = []
    rejected = 0
    room = MAX_SHARED_BYTES
    for item in shared_raw:
        try:
            shared.append(_shared(item))
        except ProtocolError:
            rejected += 1
            continue
        room -= len(shared[-1].record.text.encode("utf-8"))
        if room < 0:
            raise DecodeError(f"delegation.shared: more than {MAX_SHARED_BYTES} bytes of text")
    return Delegation(depth, tuple(chain), tuple(shared), rejected)


def _shared(item: Any) -> Shared:
    if not isinstance(item, dict):
        raise DecodeError("shared record: expected a map")
    wire = item.get("record")
    if not isinstance(wire, dict) or not isinstance(wire.get("sig"), str):
        raise DecodeError("shared record: expected a record with a hex signature")
    try:
        signature = bytes.fromhex(wire["sig"])
    except ValueError:
        raise DecodeError("shared record: signature is not hex") from None
    record = record_from_wire({**wire, "sig": signature})  # re-derives the id, verifies
    score = item.get("score", 0.0)
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        raise DecodeError("shared record: score must be a finite number")
    by = item.get("by", "")
    if not isinstance(by, str) or len(by) > MAX_AGENT_LEN:
        raise DecodeError("shared record: by must be an agent name")
    return Shared(record, float(score), by)


def next_hop(received: Delegation | None, hop: Hop, shared: Sequence[Shared]) -> Delegation:
    """The delegation an agent sends when it consults: one hop deeper than what it received
    (DecodeError-free; the caller checks :data:`MAX_DEPTH` first)."""
    chain = (*received.chain, hop) if received else (hop,)
    depth = received.depth + 1 if received else 1
    return Delegation(depth, chain[-MAX_DEPTH:], tuple(shared))
