"""The client side of A2A JSON-RPC over HTTP, sans-IO: what a node needs to use someone
else's A2A server (requests come from :func:`protocols.a2a.jsonrpc.rpc_request`).

* :func:`choose_interface` -- which JSON-RPC endpoint and dialect of an agent card to use;
* :class:`SseDecoder` -- Server-Sent Events bytes into ``data`` payloads, bounded;
* :func:`parse_reply` -- one JSON-RPC response (a whole body or one SSE payload) into its
  ``result`` object, or :class:`RemoteError` for an error response;
* :func:`send_result` and :func:`stream_event` -- that result as a model object.

A remote server is another party: everything is bounded and validated, and anything that
is not what the protocol allows is a :class:`~protocols.errors.DecodeError`.
"""

from __future__ import annotations

import json
from typing import Any

from protocols.a2a.dialects import V03, V1, Dialect
from protocols.a2a.json_decode import from_json
from protocols.a2a.model import (
    JSONRPC,
    MAX_ERROR_MESSAGE,
    A2AError,
    AgentCard,
    AgentInterface,
    Message,
    StreamEvent,
    Task,
    TaskArtifactUpdateEvent,
    TaskStatusUpdateEvent,
)
from protocols.errors import DecodeError

#: The largest single JSON-RPC response (a whole body or one SSE event) accepted.
MAX_REPLY = 1024 * 1024
#: The longest SSE line accepted (an event's data line is at most one reply).
MAX_LINE = MAX_REPLY + 64


class RemoteError(A2AError):
    """The remote server answered with a JSON-RPC error (``code``, ``message``)."""


def choose_interface(card: AgentCard, card_url: str) -> tuple[str, Dialect]:
    """The JSON-RPC endpoint URL and dialect to use with ``card``: its v1.0 interface if
    it offers one, else its v0.3 one; DecodeError if it offers JSON-RPC in neither.

    A card without interfaces at all is served by the address it was fetched from (old
    servers put the endpoint there).
    """
    jsonrpc = [i for i in card.supported_interfaces if i.protocol_binding.upper() == JSONRPC]
    for wanted in (V1, V03):
        for interface in jsonrpc:
            if _dialect_of(interface) == wanted:
                return interface.url, wanted
    if not card.supported_interfaces:
        return card_url, V1
    raise DecodeError("the agent card offers no A2A v1.0 or v0.3 JSON-RPC interface")


def _dialect_of(interface: AgentInterface) -> Dialect | None:
    version = interface.protocol_version.strip() or "1.0"
    if version == "1" or version.startswith("1."):
        return V1
    if version == "0.3" or version.startswith("0.3."):
        return V03
    return None


class SseDecoder:
    """Bytes of a ``text/event-stream`` into the ``data`` of each event (the lines joined by
    newlines, as the SSE spec says). Comments, ``event:``, ``id:`` and ``retry:`` lines are
    read and dropped. DecodeError for a line or an event larger than the limits."""

    def __init__(self, *, max_event: int = MAX_REPLY) -> None:
        self._buffer = bytearray()
        self._data: list[str] = []
        self._size = 0
        self._max_event = max_event

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer += chunk
        events: list[str] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE:
                    raise DecodeError(f"SSE line longer than {MAX_LINE} bytes")
                return events
            raw = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[: end + 1]
            line = raw.decode("utf-8", errors="replace")
            if not line:
                if self._data:
                    events.append("\n".join(self._data))
                self._data, self._size = [], 0
                continue
            field, _, value = line.partition(":")
            if field == "data":
                value = value.removeprefix(" ")
                self._size += len(value) + 1
                if self._size > self._max_event:
                    raise DecodeError(f"SSE event larger than {self._max_event} bytes")
                self._data.append(value)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_reply(payload: bytes | str) -> dict[str, Any]:
    """The ``result`` object of one JSON-RPC 2.0 response; RemoteError for an error
    response, DecodeError for anything else that is not a response with an object result."""
    if len(payload) > MAX_REPLY:
        raise DecodeError(f"response larger than {MAX_REPLY} bytes")
    try:
        data = json.loads(payload, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise DecodeError("the response is not valid JSON") from None
    if not isinstance(data, dict) or data.get("jsonrpc") != "2.0":
        raise DecodeError("not a JSON-RPC 2.0 response")
    error = data.get("error")
    if error is not None:
        if not isinstance(error, dict):
            raise DecodeError("error: expected an object")
        code, message = error.get("code"), error.get("message")
        if isinstance(code, bool) or not isinstance(code, int):
            raise DecodeError("error.code: expected an integer")
        text = message[:MAX_ERROR_MESSAGE] if isinstance(message, str) else "(no message)"
        raise RemoteError(code, text)
    result = data.get("result")
    if not isinstance(result, dict):
        raise DecodeError("result: expected an object")
    return result


_V1_KEYS: dict[str, type] = {
    "task": Task,
    "message": Message,
    "statusUpdate": TaskStatusUpdateEvent,
    "artifactUpdate": TaskArtifactUpdateEvent,
}
_V03_KINDS: dict[str, type] = {
    "task": Task,
    "message": Message,
    "status-update": TaskStatusUpdateEvent,
    "artifact-update": TaskArtifactUpdateEvent,
}


def stream_event(result: dict[str, Any], dialect: Dialect) -> StreamEvent:
    """One streamed event: v1.0 wraps it (``{"statusUpdate": {...}}``), v0.3 names it by
    ``kind``."""
    if dialect == V1:
        keys = [k for k in _V1_KEYS if result.get(k) is not None]
        if len(keys) != 1:
            raise DecodeError("a stream response holds exactly one of task, message, "
                              "statusUpdate and artifactUpdate")
        value: Any = from_json(_V1_KEYS[keys[0]], result[keys[0]], dialect)
        return value  # type: ignore[no-any-return]
    kind = result.get("kind")
    cls = _V03_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise DecodeError(f"unknown event kind {str(kind)[:32]!r}")
    value = from_json(cls, result, dialect)
    return value  # type: ignore[no-any-return]


def send_result(result: dict[str, Any], dialect: Dialect) -> Task | Message:
    """The answer to SendMessage: a task, or a direct message."""
    event = stream_event(result, dialect)
    if not isinstance(event, Task | Message):
        raise DecodeError(f"SendMessage answered with {type(event).__name__}")
    return event
