"""Property tests of the memsync message and announcement decoders.

Contract: whatever bytes arrive, a decoder returns a valid message or raises DecodeError
(BadSignature too, for announcements); nothing else escapes and nothing hangs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.codec import MAX_FRAME, pack, unpack
from protocols.errors import BadSignature, DecodeError, FrameTooLarge
from protocols.memsync import (
    MAX_ANNOUNCEMENT,
    MAX_ANNOUNCEMENTS,
    MAX_AUTHORS,
    MAX_BATCH,
    Batch,
    Bye,
    Error,
    Message,
    Pull,
    Summary,
    decode_announcement,
    decode_announcements,
    decode_message,
    encode_announcement,
    encode_announcements,
)
from protocols.records import (
    MAX_AGENT_LEN,
    MAX_KIND_LEN,
    MAX_META_ENTRIES,
    MAX_META_KEY_LEN,
    MAX_META_VALUE_LEN,
    MAX_SEQ,
    MAX_TEXT_BYTES,
    new_record,
    record_to_wire,
)
from tests.sync.helpers import ALICE, BOB, RECORDS, TENANT, messages, payload, plain, record

FUZZ = settings(
    deadline=timedelta(seconds=2),
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def decode_or_reject(data: bytes) -> Message | None:
    try:
        return decode_message(data)
    except DecodeError:
        return None


@FUZZ
@given(messages)
def test_every_message_round_trips(msg: Message) -> None:
    assert decode_message(payload(msg)) == msg


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_only_raise_decode_error(data: bytes) -> None:
    decode_or_reject(data)


@FUZZ
@given(plain)
def test_random_msgpack_values_only_raise_decode_error(obj: Any) -> None:
    decode_or_reject(pack(obj))


@FUZZ
@given(messages, st.data())
def test_truncated_messages_are_refused(msg: Message, data: st.DataObject) -> None:
    raw = payload(msg)
    cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    with pytest.raises(DecodeError):
        decode_message(raw[:cut])


@FUZZ
@given(messages, st.data())
def test_mutated_messages_decode_to_something_valid_or_raise(
    msg: Message, data: st.DataObject
) -> None:
    raw = bytearray(payload(msg))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        i = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[i] = data.draw(st.integers(min_value=0, max_value=255))
    decoded = decode_or_reject(bytes(raw))
    if decoded is not None:
        assert decode_message(payload(decoded)) == decoded


@FUZZ
@given(messages, st.data())
def test_fields_of_the_wrong_type_are_refused_or_valid(msg: Message, data: st.DataObject) -> None:
    body = unpack(payload(msg))
    key = data.draw(st.sampled_from(sorted(body)))
    body[key] = data.draw(plain)
    decoded = decode_or_reject(pack(body))
    if decoded is not None:
        assert decode_message(payload(decoded)) == decoded


def body_of(msg: Message, **changes: Any) -> bytes:
    return pack({**unpack(payload(msg)), **changes})


@pytest.mark.parametrize(
    ("msg", "changes"),
    [
        (Bye(), {"v": 2}),
        (Bye(), {"t": "push"}),
        (Pull(ALICE.peer_id, 0, 1), {"limit": MAX_BATCH + 1}),
        (Pull(ALICE.peer_id, 0, 1), {"limit": 0}),
        (Pull(ALICE.peer_id, 0, 1), {"after_seq": -1}),
        (Pull(ALICE.peer_id, 0, 1), {"author": "not-a-peer-id"}),
        (Pull(ALICE.peer_id, 0, 1), {"limit": True}),
        (Summary(TENANT, {}), {"tenant": "bad/tenant"}),
        (Summary(TENANT, {}), {"tenant": ""}),
        (Summary(TENANT, {}), {"high_water": {ALICE.peer_id: 0}}),
        (Summary(TENANT, {}), {"high_water": {"Qm-nonsense": 1}}),
        (Summary(TENANT, {}), {"high_water": {ALICE.peer_id: 1.0}}),
        (Batch(ALICE.peer_id, (), True), {"records": [1, 2]}),
        (Batch(ALICE.peer_id, (), True), {"records": [{}] * (MAX_BATCH + 1)}),
        (Batch(ALICE.peer_id, (), True), {"done": 1}),
        (Error("x", ""), {"message": "m" * 513}),
        (Error("x", ""), {"code": ""}),
    ],
)
def test_out_of_bounds_fields_are_refused(msg: Message, changes: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        decode_message(body_of(msg, **changes))


def test_summary_author_count_is_bounded() -> None:
    # Far fewer distinct valid IDs would do, but the bound is on entries, checked first.
    marks = {f"author-{i}": 1 for i in range(MAX_AUTHORS + 1)}
    with pytest.raises(DecodeError, match="exceeds"):
        decode_message(body_of(Summary(TENANT, {}), high_water=marks))


def test_oversized_payload_is_refused_before_parsing() -> None:
    with pytest.raises(FrameTooLarge):
        decode_message(b"\x00" * (MAX_FRAME + 1))


def test_a_batch_keeps_records_as_unverified_maps() -> None:
    # A bad record must not sink the batch: the client judges records one by one.
    wire = {**record_to_wire(RECORDS[0]), "text": "tampered"}
    batch = decode_message(payload(Batch(ALICE.peer_id, (wire,), False)))
    assert isinstance(batch, Batch) and batch.records == (wire,)


# -- announcements ---------------------------------------------------------------------


def test_announcement_round_trips() -> None:
    assert decode_announcement(encode_announcement(RECORDS[2])) == RECORDS[2]


def test_records_are_announced_in_as_few_batches_as_the_limits_allow() -> None:
    records = [record(ALICE, seq) for seq in range(1, 601)]
    bodies = encode_announcements(records)
    assert len(bodies) == 3  # 256 + 256 + 88 records
    assert all(len(b) <= MAX_ANNOUNCEMENTS for b in bodies)
    assert [r for b in bodies for r in decode_announcements(b)] == records
    # One record is announced as before: nodes of the version before read it.
    (single,) = encode_announcements(records[:1])
    assert single == encode_announcement(records[0])
    assert decode_announcements(single) == (records[0],)


def test_batches_are_cut_by_size_too() -> None:
    big = [record(ALICE, seq, text="x" * 30_000) for seq in range(1, 41)]
    bodies = encode_announcements(big)
    assert len(bodies) >= 3 and all(len(b) <= MAX_ANNOUNCEMENTS for b in bodies)
    assert [r for b in bodies for r in decode_announcements(b)] == big


@pytest.mark.parametrize("records", [
    [record(ALICE, 1), record(BOB, 2)],
    [record(ALICE, 2), record(ALICE, 1)],
    [record(ALICE, 1), record(ALICE, 1)],
])
def test_a_batch_is_one_authors_records_in_order(records: list[Any]) -> None:
    data = pack({"v": 1, "t": "announce_batch",
                 "records": [record_to_wire(r) for r in records]})
    with pytest.raises(DecodeError, match="one author"):
        decode_announcements(data)


def test_malformed_batches_raise_decode_error() -> None:
    for body in ({"records": []}, {"records": [1]}, {"records": "x"}, {}):
        with pytest.raises(DecodeError):
            decode_announcements(pack({"v": 1, "t": "announce_batch", **body}))
    tampered = {**record_to_wire(record(ALICE, 2)), "text": "tampered"}
    with pytest.raises(DecodeError):
        decode_announcements(pack({"v": 1, "t": "announce_batch",
                                   "records": [record_to_wire(record(ALICE, 1)), tampered]}))


def announce_wire(wire: dict[str, Any], **outer: Any) -> bytes:
    return pack({"v": 1, "t": "announce", "record": wire, **outer})


@pytest.mark.parametrize(
    "data",
    [
        announce_wire(record_to_wire(RECORDS[0]), v=2),
        announce_wire(record_to_wire(RECORDS[0]), t="summary"),
        pack({"v": 1, "t": "announce"}),
        pack({"v": 1, "t": "announce", "record": [1, 2]}),
        announce_wire({**record_to_wire(RECORDS[0]), "text": "tampered"}),
        announce_wire({**record_to_wire(RECORDS[0]), "seq": 0}),
        b"\xc1",
    ],
)
def test_malformed_announcements_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_announcement(data)


def test_the_largest_valid_record_can_be_announced() -> None:
    wide = "\U0001f600"  # 4 bytes of UTF-8 per character
    largest = new_record(
        ALICE,
        collection="expert_knowledge",
        tenant="x" * 64,
        text=wide * (MAX_TEXT_BYTES // 4),
        kind="k" * MAX_KIND_LEN,
        agent=wide * MAX_AGENT_LEN,
        created=1.0,
        seq=MAX_SEQ,
        meta={
            wide * (MAX_META_KEY_LEN - 2) + f"{i:02}": wide * MAX_META_VALUE_LEN
            for i in range(MAX_META_ENTRIES)
        },
    )
    assert decode_announcement(encode_announcement(largest)) == largest


def test_mis_signed_announcement_raises_bad_signature() -> None:
    forged = record_to_wire(RECORDS[0])
    forged["sig"] = record_to_wire(record(BOB, 1))["sig"]
    with pytest.raises(BadSignature):
        decode_announcement(announce_wire(forged))


def test_oversized_announcement_is_refused() -> None:
    with pytest.raises(FrameTooLarge):
        decode_announcement(b"\x00" * (MAX_ANNOUNCEMENT + 1))


@FUZZ
@given(st.binary(max_size=512) | plain.map(pack))
def test_random_announcements_only_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_announcement(data)


@FUZZ
@given(st.sampled_from(RECORDS), st.data())
def test_mutated_announcements_raise_or_decode_verified(rec: Any, data: st.DataObject) -> None:
    raw = bytearray(encode_announcement(rec))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        i = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[i] = data.draw(st.integers(min_value=0, max_value=255))
    try:
        decoded = decode_announcement(bytes(raw))
    except (DecodeError, BadSignature):
        return
    # Anything accepted must be exactly the signed content (e.g. a mutation of an unused
    # key, or one that mutated nothing); the id and signature pin every field.
    assert decoded == rec


@FUZZ
@given(st.sampled_from(RECORDS), st.sampled_from(sorted(record_to_wire(RECORDS[0]))), plain)
def test_announced_fields_of_any_type_are_refused_or_verified(
    rec: Any, key: str, value: Any
) -> None:
    wire = {**record_to_wire(rec), key: value}
    try:
        decoded = decode_announcement(announce_wire(wire))
    except (DecodeError, BadSignature):
        return
    assert decoded == rec
