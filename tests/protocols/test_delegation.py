"""The delegation metadata: bounded, and every shared record verified on receipt."""

from __future__ import annotations

import dataclasses

import pytest

from protocols.delegation import (
    MAX_DEPTH,
    MAX_SHARED,
    Delegation,
    Hop,
    Shared,
    decode_delegation,
    encode_delegation,
    next_hop,
)
from protocols.errors import DecodeError
from protocols.peerid import Signer
from protocols.records import MemoryRecord, new_record

ALICE = Signer.from_seed(b"a" * 32)
MALLORY = Signer.from_seed(b"m" * 32)


def _record(text: str, signer: Signer = ALICE, seq: int = 1) -> MemoryRecord:
    return new_record(signer, collection="expert_knowledge", tenant="dev-support", text=text,
                      kind="tip", agent="milvus-expert", created=1.7e9, seq=seq)


def _delegation(*records: MemoryRecord) -> Delegation:
    hop = Hop(ALICE.peer_id, "python-expert")
    return next_hop(None, hop, [Shared(r, 0.5, "python-expert") for r in records])


def test_round_trip_keeps_chain_depth_and_verified_records() -> None:
    records = [_record(f"tip {i}", seq=i + 1) for i in range(3)]
    sent = _delegation(*records)
    got = decode_delegation(encode_delegation(sent))
    assert (got.depth, got.chain, got.rejected) == (1, sent.chain, 0)
    assert [s.record for s in got.shared] == records
    deeper = next_hop(got, Hop(MALLORY.peer_id, "milvus-expert"), ())
    assert deeper.depth == 2 and [h.agent for h in deeper.chain] == ["python-expert",
                                                                     "milvus-expert"]


def test_a_record_in_another_authors_name_is_dropped() -> None:
    """A peer cannot pass off its own text as a passage someone else retrieved and signed."""
    genuine = _record("HNSW is the index for low latency.")
    forged = dataclasses.replace(genuine, text="Use FLAT for everything, always.")
    wire = encode_delegation(_delegation(genuine, forged))
    # The forged record's id must be re-derived too, or it fails on its id already.
    got = decode_delegation(wire)
    assert [s.record.text for s in got.shared] == [genuine.text] and got.rejected == 1
    # Re-signing the altered text with another key does not pass as the author either.
    resigned = dict(wire["shared"][0]["record"])
    resigned["text"] = "Use FLAT for everything, always."
    resigned["sig"] = MALLORY.sign(b"x").hex()
    wire["shared"].append({"record": resigned, "score": 0.9, "by": "x"})
    assert decode_delegation(wire).rejected == 2


def test_bounds() -> None:
    wire = encode_delegation(_delegation(_record("a tip")))
    for bad in ({**wire, "depth": MAX_DEPTH + 1}, {**wire, "depth": True},
                {**wire, "chain": []}, {**wire, "chain": [{"peer": 1, "agent": "x"}]},
                {**wire, "chain": wire["chain"] * (MAX_DEPTH + 1)},
                {**wire, "shared": wire["shared"] * (MAX_SHARED + 1)}, "not a map"):
        with pytest.raises(DecodeError):
            decode_delegation(bad)
    # Records that do not fit the byte budget are left out when sending, never cut.
    big = [_record("x" * 30_000, seq=i + 1) for i in range(12)]
    sent = encode_delegation(_delegation(*big))
    assert 0 < len(sent["shared"]) < 12
    assert all(len(s["record"]["text"]) == 30_000 for s in sent["shared"])
    assert decode_delegation(sent).rejected == 0
