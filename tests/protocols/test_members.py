"""Tests of protocols.members: card and member-list requests and replies, and their bounds."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.codec import pack
from protocols.errors import DecodeError, FrameTooLarge
from protocols.members import (
    MAX_ENVELOPE,
    MAX_MEMBERS,
    CardsReply,
    CardsRequest,
    ErrorReply,
    MembersReply,
    MembersRequest,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)

DIGEST = "ab" * 32


def test_requests_roundtrip() -> None:
    for request in (CardsRequest(DIGEST), MembersRequest(1), MembersRequest(MAX_MEMBERS)):
        assert decode_request(encode_request(request)) == request


def test_replies_roundtrip() -> None:
    cards = CardsRequest(DIGEST)
    members = MembersRequest(3)
    assert decode_reply(encode_reply(CardsReply(b"\x91\x80")), cards) == CardsReply(b"\x91\x80")
    reply = MembersReply((b"a", b"b" * MAX_ENVELOPE))
    assert decode_reply(encode_reply(reply), members) == reply
    assert decode_reply(encode_reply(ErrorReply("no")), cards) == ErrorReply("no")
    assert decode_reply(encode_reply(ErrorReply("x" * 999)), cards) == ErrorReply("x" * 256)


@pytest.mark.parametrize("body", [
    {"v": 1, "op": "cards", "digest": "ab"},
    {"v": 1, "op": "cards", "digest": DIGEST + "ab"},
    {"v": 1, "op": "members", "limit": 0},
    {"v": 1, "op": "members", "limit": MAX_MEMBERS + 1},
    {"v": 2, "op": "members", "limit": 1},
    {"v": 1, "op": "table", "limit": 1},
    {"v": 1},
    [1, 2],
])
def test_bad_requests_are_refused(body: Any) -> None:
    with pytest.raises(DecodeError):
        decode_request(pack(body))


def test_replies_are_bounded_by_what_was_asked() -> None:
    members = MembersRequest(2)
    with pytest.raises(DecodeError, match="exceeds"):
        decode_reply(encode_reply(MembersReply((b"a", b"b", b"c"))), members)
    with pytest.raises(DecodeError, match="envelope"):
        decode_reply(encode_reply(MembersReply((b"x" * (MAX_ENVELOPE + 1),))), members)
    with pytest.raises(DecodeError, match="envelope"):
        decode_reply(pack({"v": 1, "op": "members", "members": ["text"]}), members)
    # A reply to another question than the one asked.
    with pytest.raises(DecodeError, match="unexpected"):
        decode_reply(encode_reply(CardsReply(b"x")), members)
    with pytest.raises(DecodeError, match="unexpected"):
        decode_reply(encode_reply(MembersReply(())), CardsRequest(DIGEST))
    with pytest.raises(DecodeError, match="exceeds"):
        decode_reply(encode_reply(CardsReply(b"x" * (1 << 17))), CardsRequest(DIGEST))
    with pytest.raises(FrameTooLarge):
        decode_reply(b"\0" * (MAX_MEMBERS * MAX_ENVELOPE * 2), MembersRequest(1))


@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_decoders(data: bytes) -> None:
    for decode in (decode_request, lambda d: decode_reply(d, MembersRequest(5))):
        with contextlib.suppress(DecodeError):
            decode(data)
