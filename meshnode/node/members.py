"""The node's side of ``/meshnode/members/1.0.0`` (:mod:`protocols.members`): serving and
asking for agent cards by digest and for the member list (push-pull)."""

from __future__ import annotations

from collections.abc import Callable

import trio

from meshnode.node.streams import read_frame, write_frame
from meshnode.node.transport import Host, Stream
from protocols.codec import FrameDecoder
from protocols.errors import DecodeError, ProtocolError
from protocols.members import (
    MAX_REPLY,
    MAX_REQUEST,
    PROTOCOL_ID,
    CardsReply,
    CardsRequest,
    ErrorReply,
    MembersReply,
    MembersRequest,
    Reply,
    Request,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)

__all__ = ["PROTOCOL_ID", "MembersServer", "ask"]
IO_TIMEOUT_S = 5.0


class MembersServer:
    """Answers one request per stream from what ``cards`` and ``members`` give."""

    def __init__(self, cards: Callable[[str], bytes | None],
                 members: Callable[[int], list[bytes]]) -> None:
        self._cards = cards
        self._members = members
        self.served = 0

    async def __call__(self, stream: Stream) -> None:
        try:
            frame = await read_frame(stream, FrameDecoder(MAX_REQUEST), timeout=IO_TIMEOUT_S)
            if frame is None:
                return
            reply: Reply
            try:
                request = decode_request(frame)
            except ProtocolError as exc:
                reply = ErrorReply(str(exc))
            else:
                reply = self._answer(request)
            await write_frame(stream, encode_reply(reply), timeout=IO_TIMEOUT_S)
            self.served += 1
        except (ProtocolError, trio.TooSlowError, trio.BrokenResourceError,
                trio.ClosedResourceError):
            return  # the asker went away or sent garbage: nothing to tell it

    def _answer(self, request: Request) -> Reply:
        if isinstance(request, CardsRequest):
            packed = self._cards(request.digest)
            return CardsReply(packed) if packed is not None else ErrorReply("unknown digest")
        return MembersReply(tuple(self._members(request.limit)))


async def ask(host: Host, peer_id: str, request: Request, *, timeout: float) -> Reply:
    """One request to ``peer_id`` (already connected); DecodeError for an error reply."""
    async with host.open_stream(peer_id, PROTOCOL_ID, timeout=timeout) as stream:
        await write_frame(stream, encode_request(request), timeout=timeout)
        frame = await read_frame(stream, FrameDecoder(MAX_REPLY), timeout=timeout)
    if frame is None:
        raise trio.BrokenResourceError("the peer closed the stream without a reply")
    reply = decode_reply(frame, request)
    if isinstance(reply, ErrorReply):
        raise DecodeError(f"{peer_id} answered: {reply.message}")
    return reply


async def fetch_cards(host: Host, peer_id: str, digest: str) -> bytes:
    reply = await ask(host, peer_id, CardsRequest(digest), timeout=IO_TIMEOUT_S)
    assert isinstance(reply, CardsReply)
    return reply.cards


async def pull_members(host: Host, peer_id: str, limit: int) -> tuple[bytes, ...]:
    reply = await ask(host, peer_id, MembersRequest(limit), timeout=IO_TIMEOUT_S)
    assert isinstance(reply, MembersReply)
    return reply.members
