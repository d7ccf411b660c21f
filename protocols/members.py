"""``/meshnode/members/1.0.0``: agent cards by digest, and the member list of a peer.

One request and one reply per stream, each a length-prefixed msgpack map::

    request  {v, op: "cards", digest}          reply {v, op: "cards", cards: <packed bytes>}
    request  {v, op: "members", limit}         reply {v, op: "members", members: [<envelope>]}
    any reply may instead be                   {v, op: "error", message}

``cards`` returns the packed agent cards a presence named by digest: content-addressed, so
any node that holds them may answer, and the asker checks the bytes against the digest.
``members`` is the push-pull of SWIM/memberlist: a node that has just met a peer asks it for
the signed presence announcements it holds (each verified by the receiver like any other),
so that a newcomer learns the mesh from one neighbour instead of every node announcing
itself again. Every decoder bounds sizes and counts and raises DecodeError.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.codec import Fields, pack, unpack
from protocols.errors import DecodeError
from protocols.presence import DIGEST_LEN, MAX_CARDS_SIZE, MAX_PRESENCE_SIZE

PROTOCOL_ID = "/meshnode/members/1.0.0"
VERSION = 1
#: Announcements in one members reply; a larger mesh is learned over several peers.
MAX_MEMBERS = 512
#: One announcement as it travels: envelope overhead on top of the presence body.
MAX_ENVELOPE = MAX_PRESENCE_SIZE + 512
MAX_REQUEST = 256
MAX_REPLY = MAX_MEMBERS * MAX_ENVELOPE + 1024


@dataclass(frozen=True, slots=True)
class CardsRequest:
    digest: str


@dataclass(frozen=True, slots=True)
class MembersRequest:
    limit: int


Request = CardsRequest | MembersRequest


@dataclass(frozen=True, slots=True)
class CardsReply:
    cards: bytes


@dataclass(frozen=True, slots=True)
class MembersReply:
    members: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ErrorReply:
    message: str


Reply = CardsReply | MembersReply | ErrorReply


def encode_request(request: Request) -> bytes:
    if isinstance(request, CardsRequest):
        return pack({"v": VERSION, "op": "cards", "digest": request.digest})
    return pack({"v": VERSION, "op": "members", "limit": request.limit})


def _header(data: bytes, what: str, max_size: int) -> tuple[Fields, str]:
    f = Fields(unpack(data, max_size=max_size), what)
    if f.int("v", hi=2**31) != VERSION:
        raise DecodeError(f"{what}: unsupported version")
    return f, f.str("op", max_len=16)


def decode_request(data: bytes) -> Request:
    f, op = _header(data, "members request", MAX_REQUEST)
    if op == "cards":
        return CardsRequest(f.str("digest", min_len=DIGEST_LEN, max_len=DIGEST_LEN))
    if op == "members":
        return MembersRequest(f.int("limit", lo=1, hi=MAX_MEMBERS))
    raise DecodeError(f"members request: unknown op {op!r}")


def encode_reply(reply: Reply) -> bytes:
    if isinstance(reply, CardsReply):
        return pack({"v": VERSION, "op": "cards", "cards": reply.cards})
    if isinstance(reply, MembersReply):
        return pack({"v": VERSION, "op": "members", "members": list(reply.members)})
    return pack({"v": VERSION, "op": "error", "message": reply.message[:256]})


def decode_reply(data: bytes, request: Request) -> Reply:
    """The reply to ``request``: its own op, or an error."""
    f, op = _header(data, "members reply", MAX_REPLY)
    if op == "error":
        return ErrorReply(f.str("message", max_len=256))
    if isinstance(request, CardsRequest) and op == "cards":
        return CardsReply(f.bytes("cards", max_len=MAX_CARDS_SIZE))
    if isinstance(request, MembersRequest) and op == "members":
        members = f.list("members", max_items=request.limit)
        if not all(isinstance(m, bytes) and len(m) <= MAX_ENVELOPE for m in members):
            raise DecodeError(f"members reply: each member is an envelope of <= {MAX_ENVELOPE}")
        return MembersReply(tuple(members))
    raise DecodeError(f"members reply: unexpected op {op!r}")
