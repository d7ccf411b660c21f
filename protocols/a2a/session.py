"""``/meshnode/a2a/1.1.0``: many A2A requests in flight on one long-lived stream, sans-IO.

``/meshnode/a2a/1.0.0`` (:mod:`protocols.a2a.frames`) opens a stream, negotiates the
protocol and tears the stream down for every request: most of a no-op task's round trip.
A 1.1 session is one stream per pair of peers that stays open; its frames are 1.0's (same
bytes: length-prefixed msgpack, :func:`~protocols.codec.encode_frame`), and every frame
names the request it belongs to, so requests are pipelined and their replies interleave.

The conversation:

- the **client** (the stream's opener) sends ``request`` frames, each with an id not in
  use on the session, at most ``max_in_flight`` of them unanswered, and a ``cancel`` frame
  (``{v, type: "cancel", id}``) for a request it no longer wants;
- the **server** answers each request as 1.0 does (``result``; or ``event`` frames and an
  ``end``; or an ``error``), in any order relative to other requests. A request over the
  limit, or reusing a live id, is answered at once with an ``error`` frame. After a cancel
  the server stops the request's work and may or may not send its last frames;
- a request is over, for the client, at its ``result``, ``error``, ``end``, or an event
  with a final task status; the client drops frames for requests that are over (a late
  frame after a cancel is normal, not an error).

Either side closes the stream to end the session; whatever is in flight then fails.
:class:`ClientSession` and :class:`ServerSession` keep these rules; they do no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.a2a.frames import (
    WIRE_VERSION,
    End,
    ErrorReply,
    Event,
    Response,
    Result,
    decode_request,
    decode_response,
    encode_error,
    encode_request,
)
from protocols.a2a.model import (
    BUSY,
    INVALID_REQUEST,
    MAX_ID,
    TERMINAL_STATES,
    A2AError,
    Operation,
    Task,
    TaskStatusUpdateEvent,
)
from protocols.codec import MAX_FRAME, FrameDecoder, encode_frame, pack, unpack
from protocols.errors import DecodeError

SESSION_PROTOCOL = "/meshnode/a2a/1.1.0"
#: Requests one session may have unanswered at once (each side enforces its own).
MAX_IN_FLIGHT = 64
#: The JSON-RPC "server busy" of A2A's error space: over the in-flight limit.


class SessionError(RuntimeError):
    """This side broke the session's rules (a bug, not the peer's fault)."""


def encode_cancel(request_id: str) -> bytes:
    return pack({"v": WIRE_VERSION, "type": "cancel", "id": request_id})


def _finished(reply: Response) -> bool:
    if isinstance(reply, Event):
        event = reply.event
        return (isinstance(event, TaskStatusUpdateEvent) and event.final) or (
            isinstance(event, Task) and event.status.state in TERMINAL_STATES)
    return isinstance(reply, Result | ErrorReply | End)


class ClientSession:
    """The opener's side: requests out, their replies in."""

    def __init__(self, *, max_in_flight: int = MAX_IN_FLIGHT, max_frame: int = MAX_FRAME) -> None:
        self.max_in_flight = max_in_flight
        self._decoder = FrameDecoder(max_frame)
        self._out = bytearray()
        self._live: set[str] = set()

    @property
    def in_flight(self) -> int:
        return len(self._live)

    @property
    def pending(self) -> int:
        """Bytes queued and not yet taken by data_to_send."""
        return len(self._out)

    def can_send(self) -> bool:
        return len(self._live) < self.max_in_flight

    def request(self, request_id: str, op: Operation) -> None:
        if request_id in self._live:
            raise SessionError(f"request id {request_id!r} is already in flight")
        if not self.can_send():
            raise SessionError(f"{self.max_in_flight} requests are already in flight")
        self._out += encode_frame(encode_request(request_id, op))
        self._live.add(request_id)

    def cancel(self, request_id: str) -> None:
        """Stop wanting ``request_id``: the server is told; its replies are dropped."""
        if request_id in self._live:
            self._live.discard(request_id)
            self._out += encode_frame(encode_cancel(request_id))

    def receive_data(self, data: bytes) -> list[Response]:
        """The replies in ``data`` to live requests, in order; ProtocolError for a frame
        that is not a reply at all (the session is then unusable)."""
        self._decoder.feed(data)
        replies = []
        for frame in self._decoder.frames():
            reply = decode_response(frame)
            if reply.request_id not in self._live:
                continue  # over already (cancelled, or its end after a final event)
            if _finished(reply):
                self._live.discard(reply.request_id)
            replies.append(reply)
        return replies

    def data_to_send(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out


@dataclass(frozen=True, slots=True)
class NewRequest:
    request_id: str
    op: Operation


@dataclass(frozen=True, slots=True)
class Cancelled:
    request_id: str


SessionEvent = NewRequest | Cancelled


class ServerSession:
    """The answering side: requests in, (already framed) replies out."""

    def __init__(self, *, max_in_flight: int = MAX_IN_FLIGHT, max_frame: int = MAX_FRAME) -> None:
        self.max_in_flight = max_in_flight
        self._decoder = FrameDecoder(max_frame)
        self._out = bytearray()
        self._live: set[str] = set()
        #: Requests answered at once with an error: malformed, over the limit, id reused.
        self.refused = 0

    @property
    def in_flight(self) -> int:
        return len(self._live)

    @property
    def pending(self) -> int:
        """Bytes queued and not yet taken by data_to_send."""
        return len(self._out)

    def is_live(self, request_id: str) -> bool:
        return request_id in self._live

    def _refuse(self, request_id: str, code: int, message: str) -> None:
        self.refused += 1
        self._out += encode_frame(encode_error(request_id, code, message))

    def receive_data(self, data: bytes) -> list[SessionEvent]:
        """New requests and cancels in ``data``. A request that cannot be served is
        answered here (an error frame); ProtocolError for a frame that is neither a request
        nor a cancel (the session is then unusable)."""
        self._decoder.feed(data)
        events: list[SessionEvent] = []
        for frame in self._decoder.frames():
            event = self._frame(frame)
            if event is not None:
                events.append(event)
        return events

    def _frame(self, frame: bytes) -> SessionEvent | None:
        obj = unpack(frame)
        if isinstance(obj, dict) and obj.get("type") == "cancel":
            request_id = obj.get("id")
            if obj.get("v") != WIRE_VERSION or not isinstance(request_id, str) \
                    or not 0 < len(request_id) <= MAX_ID:
                raise DecodeError("a2a session: malformed cancel frame")
            return Cancelled(request_id) if request_id in self._live else None
        try:
            request_id, op = decode_request(frame)
        except A2AError as exc:
            if not exc.request_id:
                raise DecodeError(f"a2a session: {exc.message}") from None
            self._refuse(str(exc.request_id), exc.code, exc.message)
            return None
        if request_id in self._live:
            self._refuse(request_id, INVALID_REQUEST, "request id already in flight")
            return None
        if len(self._live) >= self.max_in_flight:
            self._refuse(request_id, BUSY, f"{self.max_in_flight} requests already in flight "
                                           "on this session")
            return None
        self._live.add(request_id)
        return NewRequest(request_id, op)

    def send(self, request_id: str, framed: bytes) -> None:
        """Queue reply bytes (whole frames) for a live request."""
        if request_id not in self._live:
            raise SessionError(f"no live request {request_id!r}")
        self._out += framed

    def finish(self, request_id: str) -> None:
        """``request_id`` was answered (or given up): its id may be used again."""
        self._live.discard(request_id)

    def data_to_send(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out


__all__ = [
    "BUSY",
    "MAX_IN_FLIGHT",
    "SESSION_PROTOCOL",
    "Cancelled",
    "ClientSession",
    "NewRequest",
    "ServerSession",
    "SessionError",
    "SessionEvent",
]
