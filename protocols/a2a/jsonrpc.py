"""A2A JSON-RPC 2.0 requests, responses and SSE events, in either dialect.

The dialect of a request is chosen by its JSON-RPC method name (see
:mod:`protocols.a2a.dialects`). :func:`parse_rpc` accepts any request body and raises
:class:`RpcError` (with the JSON-RPC code) for anything it cannot serve.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

from protocols.a2a.dialects import (
    STATE_NAMES_V1,
    V03,
    V1,
    Dialect,
    _check_dialect,
    _fields,
    _opt_bool,
    _opt_int,
    _put,
)
from protocols.a2a.frames import encode_request
from protocols.a2a.json_decode import _FINAL_STATES, _message_from_json, _opt_id, _state
from protocols.a2a.json_encode import _message_to_json, to_json
from protocols.a2a.model import (
    DEFAULT_PAGE_SIZE,
    ERROR_REASONS,
    INVALID_AGENT_RESPONSE,
    INVALID_PARAMS,
    INVALID_REQUEST,
    MAX_HISTORY,
    MAX_ID,
    MAX_PAGE_SIZE,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    PUSH_NOTIFICATION_NOT_SUPPORTED,
    UNSUPPORTED_OPERATION,
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
    TaskState,
    TaskStatusUpdateEvent,
)
from protocols.a2a.states import apply_history_length
from protocols.codec import Fields
from protocols.errors import DecodeError

#: A JSON-RPC request body larger than this is refused (files travel inline, base64).
MAX_RPC_BODY = 1024 * 1024
MAX_METHOD = 128
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
ERROR_DOMAIN = "a2a-protocol.org"

# ---- JSON-RPC ----------------------------------------------------------------------------------

RequestId: TypeAlias = str | int | None


class RpcError(A2AError):
    """A JSON-RPC request that cannot be served; ``to_response()`` is the error reply."""

    def __init__(
        self, code: int, message: str, *, request_id: RequestId = None, dialect: Dialect = V1
    ) -> None:
        super().__init__(code, message, request_id=request_id)
        self.dialect: Dialect = dialect

    def to_response(self) -> dict[str, Any]:
        return rpc_error(self.request_id, self.code, self.message, self.dialect)


@dataclass(frozen=True, slots=True)
class RpcCall:
    """A parsed A2A JSON-RPC request."""

    id: RequestId
    method: str
    dialect: Dialect
    op: Operation

    @property
    def streaming(self) -> bool:
        return isinstance(self.op, SendStreamingMessage)


def _send_config(raw: dict[str, Any], what: str, dialect: Dialect) -> tuple[bool, int | None]:
    """(blocking, history_length) of a send request's configuration."""
    config = raw.get("configuration")
    if config is None:
        return True, None
    cf, craw = _fields(config, f"{what}.configuration")
    push_key = "taskPushNotificationConfig" if dialect == V1 else "pushNotificationConfig"
    if craw.get(push_key) is not None:
        raise A2AError(PUSH_NOTIFICATION_NOT_SUPPORTED, "push notifications are not supported")
    history = _opt_int(craw, "historyLength", f"{what}.configuration", lo=0, hi=2**31 - 1)
    if dialect == V1:
        blocking = not _opt_bool(cf, craw, "returnImmediately")
    else:
        blocking = _opt_bool(cf, craw, "blocking", default=True)
    return blocking, None if history is None else min(history, MAX_HISTORY)


def _history_length(raw: dict[str, Any], what: str) -> int | None:
    value = _opt_int(raw, "historyLength", what, lo=0, hi=2**31 - 1)
    return None if value is None else min(value, MAX_HISTORY)


def _send(params: dict[str, Any], dialect: Dialect) -> SendMessage:
    message = _message_from_json(params.get("message"), "params.message", dialect)
    blocking, history = _send_config(params, "params", dialect)
    return SendMessage(message, blocking=blocking, history_length=history)


def _stream(params: dict[str, Any], dialect: Dialect) -> SendStreamingMessage:
    return SendStreamingMessage(_send(params, dialect).message)


def _get_task(params: dict[str, Any], dialect: Dialect) -> GetTask:
    f = Fields(params, "params")
    return GetTask(f.str("id", min_len=1, max_len=MAX_ID), _history_length(params, "params"))


def _cancel_task(params: dict[str, Any], dialect: Dialect) -> CancelTask:
    return CancelTask(Fields(params, "params").str("id", min_len=1, max_len=MAX_ID))


def _list_tasks(params: dict[str, Any], dialect: Dialect) -> ListTasks:
    f = Fields(params, "params")
    status = params.get("status")
    state = None
    if status is not None and status not in ("TASK_STATE_UNSPECIFIED", 0):
        state = _state(status, "params.status", dialect)
    page_size = _opt_int(params, "pageSize", "params", lo=-(2**31), hi=2**31 - 1)
    if page_size is not None and not 1 <= page_size <= MAX_PAGE_SIZE:
        raise DecodeError(f"params.pageSize: must be between 1 and {MAX_PAGE_SIZE}")
    if f.opt_str("pageToken", max_len=MAX_ID):
        raise DecodeError("params.pageToken: unknown page token (all tasks fit one page)")
    return ListTasks(
        context_id=_opt_id(f, "contextId"),
        state=state,
        page_size=DEFAULT_PAGE_SIZE if page_size is None else page_size,
        history_length=_history_length(params, "params"),
        include_artifacts=_opt_bool(f, params, "includeArtifacts"),
    )


def _card(params: dict[str, Any], dialect: Dialect) -> GetAgentCard:
    return GetAgentCard()


_PARSERS: dict[str, tuple[Dialect, Callable[[dict[str, Any], Dialect], Operation]]] = {
    "SendMessage": (V1, _send),
    "SendStreamingMessage": (V1, _stream),
    "GetTask": (V1, _get_task),
    "ListTasks": (V1, _list_tasks),
    "CancelTask": (V1, _cancel_task),
    "GetExtendedAgentCard": (V1, _card),
    "message/send": (V03, _send),
    "message/stream": (V03, _stream),
    "tasks/get": (V03, _get_task),
    "tasks/cancel": (V03, _cancel_task),
    "agent/getAuthenticatedExtendedCard": (V03, _card),
}
#: Methods of the spec that this server knows but does not offer, and the error they get.
_UNSUPPORTED: dict[str, tuple[Dialect, int]] = {
    "SubscribeToTask": (V1, UNSUPPORTED_OPERATION),
    "CreateTaskPushNotificationConfig": (V1, PUSH_NOTIFICATION_NOT_SUPPORTED),
    "GetTaskPushNotificationConfig": (V1, PUSH_NOTIFICATION_NOT_SUPPORTED),
    "ListTaskPushNotificationConfigs": (V1, PUSH_NOTIFICATION_NOT_SUPPORTED),
    "DeleteTaskPushNotificationConfig": (V1, PUSH_NOTIFICATION_NOT_SUPPORTED),
    "tasks/resubscribe": (V03, UNSUPPORTED_OPERATION),
    "tasks/pushNotificationConfig/set": (V03, PUSH_NOTIFICATION_NOT_SUPPORTED),
    "tasks/pushNotificationConfig/get": (V03, PUSH_NOTIFICATION_NOT_SUPPORTED),
    "tasks/pushNotificationConfig/list": (V03, PUSH_NOTIFICATION_NOT_SUPPORTED),
    "tasks/pushNotificationConfig/delete": (V03, PUSH_NOTIFICATION_NOT_SUPPORTED),
}
METHODS: frozenset[str] = frozenset(_PARSERS)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _valid_id(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return len(value) <= MAX_ID
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


def parse_rpc(body: bytes | str) -> RpcCall:
    """Parse and validate one A2A JSON-RPC 2.0 request; :class:`RpcError` if it cannot be
    served (with the JSON-RPC code, and the request id and dialect when they are known)."""
    if len(body) > MAX_RPC_BODY:
        raise RpcError(INVALID_REQUEST, f"payload too large (limit {MAX_RPC_BODY} bytes)")
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise RpcError(PARSE_ERROR, "the request body is not valid JSON") from None
    if isinstance(data, list):
        raise RpcError(INVALID_REQUEST, "batch requests are not supported")
    if not isinstance(data, dict):
        raise RpcError(INVALID_REQUEST, "a JSON-RPC request must be an object")
    request_id = data.get("id")
    if not _valid_id(request_id):
        raise RpcError(INVALID_REQUEST, "id must be a string, an integer or null")
    method = data.get("method")
    if not isinstance(method, str) or not 0 < len(method) <= MAX_METHOD:
        raise RpcError(INVALID_REQUEST, "method must be a non-empty string", request_id=request_id)
    dialect: Dialect = V03 if "/" in method else V1
    if data.get("jsonrpc") != "2.0":
        raise RpcError(
            INVALID_REQUEST, "jsonrpc must be exactly '2.0'", request_id=request_id, dialect=dialect
        )
    if method in _UNSUPPORTED:
        dialect, code = _UNSUPPORTED[method]
        raise RpcError(code, f"{method} is not supported", request_id=request_id, dialect=dialect)
    if method not in _PARSERS:
        raise RpcError(
            METHOD_NOT_FOUND, f"unknown method {method!r}", request_id=request_id, dialect=dialect
        )
    dialect, parse = _PARSERS[method]
    params = data.get("params")
    if params is None:
        params = {}
    try:
        if not isinstance(params, dict):
            raise DecodeError("params must be an object")
        op = parse(params, dialect)
    except A2AError as exc:
        raise RpcError(exc.code, exc.message, request_id=request_id, dialect=dialect) from None
    except DecodeError as exc:
        raise RpcError(INVALID_PARAMS, str(exc), request_id=request_id, dialect=dialect) from None
    try:
        # JSON can spell lone surrogates ("\ud800") that are not text and that no msgpack
        # frame can carry: whatever is accepted here must be able to cross the mesh.
        encode_request("check", op)
    except ValueError:
        raise RpcError(
            INVALID_PARAMS, "strings must be valid Unicode", request_id=request_id, dialect=dialect
        ) from None
    return RpcCall(request_id, method, dialect, op)


_V1_METHOD_OF: dict[type, str] = {
    SendMessage: "SendMessage",
    SendStreamingMessage: "SendStreamingMessage",
    GetTask: "GetTask",
    ListTasks: "ListTasks",
    CancelTask: "CancelTask",
    GetAgentCard: "GetExtendedAgentCard",
}
_V03_METHOD_OF: dict[type, str] = {
    SendMessage: "message/send",
    SendStreamingMessage: "message/stream",
    GetTask: "tasks/get",
    CancelTask: "tasks/cancel",
    GetAgentCard: "agent/getAuthenticatedExtendedCard",
}


def rpc_request(request_id: RequestId, op: Operation, dialect: Dialect = V1) -> dict[str, Any]:
    """The JSON-RPC request of ``op`` (what a client sends); ValueError if ``dialect`` has no
    method for it (v0.3 has no ListTasks)."""
    _check_dialect(dialect)
    method = (_V1_METHOD_OF if dialect == V1 else _V03_METHOD_OF).get(type(op))
    if method is None:
        raise ValueError(f"A2A {dialect} has no method for {type(op).__name__}")
    params: dict[str, Any] = {}
    if isinstance(op, SendMessage | SendStreamingMessage):
        params["message"] = _message_to_json(op.message, dialect)
        config: dict[str, Any] = {}
        if isinstance(op, SendMessage):
            if dialect == V1:
                _put(config, "returnImmediately", not op.blocking)
            else:
                config["blocking"] = op.blocking
            _put(config, "historyLength", op.history_length)
        _put(params, "configuration", config)
    elif isinstance(op, GetTask | CancelTask):
        params["id"] = op.task_id
        if isinstance(op, GetTask) and op.history_length is not None:
            params["historyLength"] = op.history_length
    elif isinstance(op, ListTasks):
        _put(params, "contextId", op.context_id)
        if op.state is not None:
            params["status"] = STATE_NAMES_V1[op.state]
        params["pageSize"] = op.page_size
        if op.history_length is not None:
            params["historyLength"] = op.history_length
        _put(params, "includeArtifacts", op.include_artifacts)
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def rpc_error(
    request_id: RequestId, code: int, message: str, dialect: Dialect = V1
) -> dict[str, Any]:
    """A JSON-RPC error response; v1.0 errors carry a ``google.rpc.ErrorInfo`` like
    a2a-sdk's server sends (the client reads the code; the details are informative)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if dialect == V1:
        reason = ERROR_REASONS.get(code, "UNKNOWN_ERROR")
        error["data"] = [
            {"@type": ERROR_INFO_TYPE, "reason": reason, "domain": ERROR_DOMAIN, "metadata": {}}
        ]
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def _bad_response(op: Operation, value: object) -> A2AError:
    return A2AError(
        INVALID_AGENT_RESPONSE,
        f"the agent answered {type(op).__name__} with {type(value).__name__}",
    )


def rpc_result(call: RpcCall, value: object) -> dict[str, Any]:
    """The JSON-RPC success response of ``call`` answered by ``value``.

    Applies the request's history length (and ListTasks' page size and includeArtifacts)
    whatever the handler did; A2AError(INVALID_AGENT_RESPONSE) if ``value`` has the wrong
    type for the operation.
    """
    op, dialect = call.op, call.dialect
    result: dict[str, Any]
    if isinstance(op, SendMessage):
        if isinstance(value, Task):
            value = apply_history_length(value, op.history_length)
        elif not isinstance(value, Message):
            raise _bad_response(op, value)
        result = to_json(value, dialect)
        if dialect == V1:
            result = {"task" if isinstance(value, Task) else "message": result}
    elif isinstance(op, GetTask | CancelTask):
        if not isinstance(value, Task):
            raise _bad_response(op, value)
        history = op.history_length if isinstance(op, GetTask) else None
        result = to_json(apply_history_length(value, history), dialect)
    elif isinstance(op, ListTasks):
        if not (isinstance(value, tuple | list) and all(isinstance(t, Task) for t in value)):
            raise _bad_response(op, value)
        tasks = [apply_history_length(t, op.history_length) for t in value][: op.page_size]
        if not op.include_artifacts:
            tasks = [replace(t, artifacts=()) for t in tasks]
        result = {
            "tasks": [to_json(t, dialect) for t in tasks],
            "nextPageToken": "",
            "pageSize": op.page_size,
            "totalSize": len(tasks),
        }
    elif isinstance(op, GetAgentCard):
        if not isinstance(value, AgentCard):
            raise _bad_response(op, value)
        result = to_json(value, dialect)
    else:
        raise _bad_response(op, value)
    return {"jsonrpc": "2.0", "id": call.id, "result": result}


_V1_EVENT_KEYS: dict[type, str] = {
    Task: "task",
    Message: "message",
    TaskStatusUpdateEvent: "statusUpdate",
    TaskArtifactUpdateEvent: "artifactUpdate",
}


def rpc_event(call: RpcCall, event: StreamEvent) -> dict[str, Any]:
    """One streamed JSON-RPC response: v1.0 wraps the event in a ``StreamResponse``
    (``{"statusUpdate": ...}``), v0.3 sends the event itself (with its ``kind``)."""
    key = _V1_EVENT_KEYS.get(type(event))
    if key is None:
        raise A2AError(INVALID_AGENT_RESPONSE, f"not an A2A stream event: {type(event).__name__}")
    body = to_json(event, call.dialect)
    return {"jsonrpc": "2.0", "id": call.id, "result": {key: body} if call.dialect == V1 else body}


def sse_frame(payload: dict[str, Any], *, event: str | None = None) -> bytes:
    """One Server-Sent Event carrying ``payload`` as JSON on a single ``data:`` line."""
    data = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data}\n\n".encode()


def final_state(state: TaskState) -> bool:
    """Whether a stream ends at ``state`` (terminal, or waiting for the client)."""
    return state.value in _FINAL_STATES
