"""The frames of ``/meshnode/a2a/1.0.0``.

On a libp2p stream, the asking side writes one request frame and the answering side writes
result, event, error and end frames carrying the same request id::

    request  {v, type: "request", id, op, body}
    result   {v, type: "result", id, kind: task|message|card|tasks, body}
    event    {v, type: "event", id, kind: task|message|status|artifact, body}
    error    {v, type: "error", id, code, message}
    end      {v, type: "end", id}

Each payload is msgpack (:func:`protocols.codec.pack`), to be length-prefixed with
:func:`protocols.codec.encode_frame`. Every decoder bounds sizes, counts and nesting, and
raises :class:`~protocols.errors.DecodeError` (or :class:`~protocols.a2a.model.A2AError`)
and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from protocols.a2a.model import (
    INVALID_PARAMS,
    MAX_ERROR_MESSAGE,
    MAX_HISTORY,
    MAX_ID,
    MAX_PAGE_SIZE,
    MAX_TASKS,
    METHOD_NOT_FOUND,
    A2AError,
    AgentCard,
    CancelTask,
    GetAgentCard,
    GetTask,
    ListTasks,
    Message,
    Operation,
    SendMessage,
    SendStreamingMessage,
    StreamEvent,
    Task,
    TaskArtifactUpdateEvent,
    TaskStatusUpdateEvent,
)
from protocols.a2a.validation import task_state
from protocols.a2a.wire import (
    _artifact_event_from_wire,
    _fields,
    _message_from_wire,
    _message_to_wire,
    _opt_int,
    _status_event_from_wire,
    _task_from_wire,
    _task_to_wire,
    card_from_wire,
    to_wire,
)
from protocols.codec import Fields, pack, unpack
from protocols.errors import DecodeError

A2A_PROTOCOL = "/meshnode/a2a/1.0.0"
WIRE_VERSION = 1


# ---- frames ------------------------------------------------------------------------------------

_OPS: dict[type, str] = {
    SendMessage: "send_message",
    SendStreamingMessage: "send_streaming_message",
    GetTask: "get_task",
    ListTasks: "list_tasks",
    CancelTask: "cancel_task",
    GetAgentCard: "get_agent_card",
}


def _op_body(op: Operation) -> dict[str, Any]:
    if isinstance(op, SendMessage):
        return {
            "message": _message_to_wire(op.message),
            "blocking": op.blocking,
            "history_length": op.history_length,
        }
    if isinstance(op, SendStreamingMessage):
        return {"message": _message_to_wire(op.message)}
    if isinstance(op, GetTask):
        return {"task_id": op.task_id, "history_length": op.history_length}
    if isinstance(op, ListTasks):
        return {
            "context_id": op.context_id,
            "state": None if op.state is None else op.state.value,
            "page_size": op.page_size,
            "history_length": op.history_length,
            "include_artifacts": op.include_artifacts,
        }
    if isinstance(op, CancelTask):
        return {"task_id": op.task_id}
    return {}


def _op_from_wire(name: str, obj: Any) -> Operation:
    what = f"a2a.{name}"
    f, raw = _fields(obj, what)
    if name == "send_message":
        return SendMessage(
            _message_from_wire(raw.get("message"), f"{what}.message"),
            blocking=f.bool("blocking"),
            history_length=_opt_int(f, raw, "history_length", lo=0, hi=MAX_HISTORY),
        )
    if name == "send_streaming_message":
        return SendStreamingMessage(_message_from_wire(raw.get("message"), f"{what}.message"))
    if name == "get_task":
        return GetTask(
            f.str("task_id", min_len=1, max_len=MAX_ID),
            history_length=_opt_int(f, raw, "history_length", lo=0, hi=MAX_HISTORY),
        )
    if name == "list_tasks":
        state = f.opt_str("state", max_len=32)
        return ListTasks(
            context_id=f.opt_str("context_id", max_len=MAX_ID),
            state=None if state is None else task_state(state, f"{what}.state"),
            page_size=f.int("page_size", lo=1, hi=MAX_PAGE_SIZE),
            history_length=_opt_int(f, raw, "history_length", lo=0, hi=MAX_HISTORY),
            include_artifacts=f.bool("include_artifacts"),
        )
    if name == "cancel_task":
        return CancelTask(f.str("task_id", min_len=1, max_len=MAX_ID))
    if name == "get_agent_card":
        return GetAgentCard()
    raise A2AError(METHOD_NOT_FOUND, f"unknown a2a operation {name!r}")


def _header(payload: bytes, what: str) -> tuple[Fields, dict[str, Any], str, str]:
    f, raw = _fields(unpack(payload), what)
    version = f.int("v", hi=2**31)
    if version != WIRE_VERSION:
        raise DecodeError(f"{what}: unsupported version {version}, expected {WIRE_VERSION}")
    return f, raw, f.str("type", max_len=16), f.str("id", min_len=1, max_len=MAX_ID)


def _frame(frame_type: str, request_id: str, **fields: Any) -> bytes:
    return pack({"v": WIRE_VERSION, "type": frame_type, "id": request_id, **fields})


def encode_request(request_id: str, op: Operation) -> bytes:
    return _frame("request", request_id, op=_OPS[type(op)], body=_op_body(op))


def decode_request(payload: bytes) -> tuple[str, Operation]:
    """The request id and operation of a request frame.

    An unknown operation raises :class:`A2AError` (METHOD_NOT_FOUND), so that the answering
    side can still reply with an error frame for that request id.
    """
    f, raw, kind, request_id = _header(payload, "a2a request")
    if kind != "request":
        raise DecodeError(f"a2a request: expected type 'request', got {kind!r}")
    try:
        return request_id, _op_from_wire(f.str("op", max_len=32), raw.get("body"))
    except A2AError as exc:
        exc.request_id = request_id
        raise
    except DecodeError as exc:
        raise A2AError(INVALID_PARAMS, str(exc), request_id=request_id) from None


@dataclass(frozen=True, slots=True)
class Result:
    request_id: str
    value: Task | Message | AgentCard | tuple[Task, ...]


@dataclass(frozen=True, slots=True)
class Event:
    request_id: str
    event: StreamEvent


@dataclass(frozen=True, slots=True)
class ErrorReply:
    request_id: str
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class End:
    request_id: str


Response: TypeAlias = Result | Event | ErrorReply | End


def encode_result(request_id: str, value: Task | Message | AgentCard | tuple[Task, ...]) -> bytes:
    if isinstance(value, tuple):
        return _frame("result", request_id, kind="tasks", body=[_task_to_wire(t) for t in value])
    kind = {Task: "task", Message: "message", AgentCard: "card"}.get(type(value))
    if kind is None:
        raise TypeError(f"not an a2a result: {type(value).__name__}")
    return _frame("result", request_id, kind=kind, body=to_wire(value))


_EVENT_KINDS: dict[type, str] = {
    Task: "task",
    Message: "message",
    TaskStatusUpdateEvent: "status",
    TaskArtifactUpdateEvent: "artifact",
}


def encode_event(request_id: str, event: StreamEvent) -> bytes:
    kind = _EVENT_KINDS.get(type(event))
    if kind is None:
        raise TypeError(f"not an a2a stream event: {type(event).__name__}")
    return _frame("event", request_id, kind=kind, body=to_wire(event))


def encode_error(request_id: str, code: int, message: str) -> bytes:
    return _frame("error", request_id, code=code, message=message[:MAX_ERROR_MESSAGE])


def encode_end(request_id: str) -> bytes:
    return _frame("end", request_id)


def decode_response(payload: bytes) -> Response:
    """Decode a result, event, error or end frame."""
    f, raw, kind, request_id = _header(payload, "a2a response")
    if kind == "result":
        body_kind = f.str("kind", max_len=16)
        body = raw.get("body")
        if body_kind == "tasks":
            items = f.list("body", max_items=MAX_TASKS)
            return Result(
                request_id,
                tuple(_task_from_wire(t, f"a2a result.body[{i}]") for i, t in enumerate(items)),
            )
        decoders: dict[str, Callable[[Any], Task | Message | AgentCard]] = {
            "task": _task_from_wire,
            "message": _message_from_wire,
            "card": card_from_wire,
        }
        if body_kind not in decoders:
            raise DecodeError(f"a2a result: unknown kind {body_kind!r}")
        return Result(request_id, decoders[body_kind](body))
    if kind == "event":
        body_kind = f.str("kind", max_len=16)
        events: dict[str, Callable[[Any], StreamEvent]] = {
            "task": _task_from_wire,
            "message": _message_from_wire,
            "status": _status_event_from_wire,
            "artifact": _artifact_event_from_wire,
        }
        if body_kind not in events:
            raise DecodeError(f"a2a event: unknown kind {body_kind!r}")
        return Event(request_id, events[body_kind](raw.get("body")))
    if kind == "error":
        return ErrorReply(
            request_id,
            f.int("code", lo=-(2**31), hi=2**31 - 1),
            f.str("message", max_len=MAX_ERROR_MESSAGE),
        )
    if kind == "end":
        return End(request_id)
    raise DecodeError(f"a2a response: unknown type {kind!r}")
