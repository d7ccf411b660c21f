"""A2A over the local HTTP API: the agent card and JSON-RPC 2.0 with Server-Sent Events.

``GET /.well-known/agent-card.json`` serves the node's card, with its interfaces pointing at
``POST /a2a`` of this same server (as the client reached it), once for A2A v1.0 and once for
v0.3. ``POST /a2a`` takes the v1.0 methods (``SendMessage``, ``SendStreamingMessage``,
``GetTask``, ``ListTasks``, ``CancelTask``, ``GetExtendedAgentCard``) and the v0.3 ones
(``message/send``, ``message/stream``, ``tasks/get``, ``tasks/cancel``,
``agent/getAuthenticatedExtendedCard``); streaming methods answer as ``text/event-stream``,
one JSON-RPC response per event. Every failure is a JSON-RPC error object with the A2A code
(HTTP 200), never an HTTP 500; only a missing or wrong token (401) is an HTTP error.

The answering itself is the node's: any object with the methods of :class:`A2AHandler`,
one per caller. A request with the API token is the operator's; without it (only with
``public_a2a``) it is an anonymous client's, known by its address: its tasks are its own,
and GetTask, ListTasks and CancelTask reach no one else's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any, Protocol

import trio

from meshnode.a2a.owners import OPERATOR, Owner, client_owner
from meshnode.api.app import ApiApp, Request, StreamingResponse
from protocols.a2a import (
    INTERNAL_ERROR,
    INVALID_AGENT_RESPONSE,
    JSONRPC,
    VERSION_NOT_SUPPORTED,
    A2AError,
    AgentCard,
    AgentInterface,
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
)
from protocols.a2a.dialects import V03_PROTOCOL_VERSION, V1
from protocols.a2a.json_encode import card_document
from protocols.a2a.jsonrpc import (
    RpcCall,
    RpcError,
    parse_rpc,
    rpc_error,
    rpc_event,
    rpc_result,
    sse_frame,
)
from protocols.errors import ProtocolError

log = logging.getLogger("meshnode.a2a")

A2A_PATH = "/a2a"
CARD_PATH = "/.well-known/agent-card.json"
#: An SSE comment is sent when a stream is idle this long: a2a-sdk's default httpx client
#: gives up on a response that is silent for 5 s.
SSE_HEARTBEAT_S = 4.0
SSE_HEARTBEAT = b": keep-alive\n\n"
#: The security scheme a token-protected card announces (v1.0 and v0.3 forms, merged the way
#: a2a-sdk's server merges them, so that clients of either version can read it).
BEARER_SCHEME = "bearer"
_HOST = re.compile(r"(?:[A-Za-z0-9.\-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")


class A2AHandler(Protocol):
    """What the node does for each A2A operation (over the mesh, for the real node).

    Raise :class:`A2AError` with an A2A code (TASK_NOT_FOUND, TASK_NOT_CANCELABLE...) for a
    refusal; a :class:`ProtocolError` is reported as INVALID_AGENT_RESPONSE and anything else
    as INTERNAL_ERROR. ``send_streaming`` must not keep a cancel scope or nursery open across
    a ``yield`` (it is iterated by another task than the one that created it).
    """

    async def card(self) -> AgentCard: ...

    async def send_message(self, op: SendMessage) -> Task | Message: ...

    def send_streaming(self, op: SendStreamingMessage) -> AsyncIterator[StreamEvent]: ...

    async def get_task(self, op: GetTask) -> Task: ...

    async def list_tasks(self, op: ListTasks) -> tuple[Task, ...]: ...

    async def cancel_task(self, op: CancelTask) -> Task: ...


def _base_url(request: Request) -> str:
    """``scheme://host[:port]`` as the client reached this server."""
    host = request.header("host") or ""
    if not _HOST.fullmatch(host):
        host = "127.0.0.1"
    scheme = request.scheme if request.scheme in ("http", "https") else "http"
    return f"{scheme}://{host}"


def served_card(card: AgentCard, base_url: str) -> AgentCard:
    """``card`` with its interfaces replaced by this server's JSON-RPC endpoint."""
    url = base_url + A2A_PATH
    return replace(
        card,
        supported_interfaces=(
            AgentInterface(url, JSONRPC, V1),
            AgentInterface(url, JSONRPC, V03_PROTOCOL_VERSION),
        ),
    )


def _with_security(document: dict[str, Any]) -> dict[str, Any]:
    document["securitySchemes"] = {
        BEARER_SCHEME: {
            "httpAuthSecurityScheme": {"scheme": "Bearer"},
            "type": "http",
            "scheme": "Bearer",
        }
    }
    document["securityRequirements"] = [{"schemes": {BEARER_SCHEME: {"list": []}}}]
    document["security"] = [{BEARER_SCHEME: []}]
    return document


def _error_of(exc: Exception) -> tuple[int, str]:
    """The JSON-RPC code and message reporting ``exc`` raised by the handler."""
    if isinstance(exc, A2AError):
        return exc.code, exc.message
    if isinstance(exc, ProtocolError):
        return INVALID_AGENT_RESPONSE, f"invalid answer from the agent: {exc}"
    if isinstance(exc, trio.TooSlowError):
        return INTERNAL_ERROR, "the agent did not answer in time"
    log.error("A2A handler failed", exc_info=exc)
    return INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}"


def _check_version(request: Request, call: RpcCall) -> None:
    """Refuse an ``A2A-Version`` header naming a version this server does not speak."""
    version = (request.header("a2a-version") or "").strip()
    if version and not re.fullmatch(r"(1|0\.3)(\.[0-9]+)*", version):
        raise RpcError(
            VERSION_NOT_SUPPORTED,
            f"A2A version {version[:20]!r} is not supported (1.0 and 0.3 are)",
            request_id=call.id,
            dialect=call.dialect,
        )


async def _unary(handler: A2AHandler, op: Operation, base_url: str) -> object:
    if isinstance(op, SendMessage):
        return await handler.send_message(op)
    if isinstance(op, GetTask):
        return await handler.get_task(op)
    if isinstance(op, ListTasks):
        return await handler.list_tasks(op)
    if isinstance(op, CancelTask):
        return await handler.cancel_task(op)
    if isinstance(op, GetAgentCard):
        return served_card(await handler.card(), base_url)
    raise TypeError(f"not a unary operation: {type(op).__name__}")


async def _events(handler: A2AHandler, call: RpcCall) -> AsyncIterator[bytes]:
    """The SSE body of a streaming call; a failure becomes a final error event."""
    assert isinstance(call.op, SendStreamingMessage)
    try:
        async for event in handler.send_streaming(call.op):
            yield sse_frame(rpc_event(call, event))
    except Exception as exc:
        code, message = _error_of(exc)
        payload = rpc_error(call.id, code, message, call.dialect)
        # v1.0 clients look for the SSE event name "error"; v0.3 ones read the payload.
        yield sse_frame(payload, event="error" if call.dialect == V1 else None)


def caller_of(request: Request) -> Owner:
    """Who a JSON-RPC request speaks for: the operator with the token, else an anonymous
    client known by its address."""
    return OPERATOR if request.authorised else client_owner(request.client or "unknown")


def add_a2a_routes(
    app: ApiApp,
    handler_for: Callable[[Owner], A2AHandler],
    *,
    require_token: bool,
    heartbeat_s: float = SSE_HEARTBEAT_S,
) -> None:
    """Serve the agent card and A2A JSON-RPC on ``app``; ``handler_for`` gives the handler
    of each caller.

    The card is A2A's public discovery document, so it is always readable without the token.
    With ``require_token`` (the default the node should use) JSON-RPC needs the API token as
    ``Authorization: Bearer <token>`` and the card announces that bearer scheme, so a client
    learns from it how to authenticate; without it JSON-RPC is public too.
    """

    async def card_route(request: Request) -> dict[str, Any]:
        card = served_card(await handler_for(caller_of(request)).card(), _base_url(request))
        document = card_document(card)
        return _with_security(document) if require_token else document

    async def rpc_route(request: Request) -> dict[str, Any] | StreamingResponse:
        try:
            call = parse_rpc(request.body)
            _check_version(request, call)
        except RpcError as exc:
            return exc.to_response()
        handler = handler_for(caller_of(request))
        if isinstance(call.op, SendStreamingMessage):
            return StreamingResponse(
                "text/event-stream",
                _events(handler, call),
                headers=(("x-accel-buffering", "no"),),
                heartbeat=SSE_HEARTBEAT,
                heartbeat_s=heartbeat_s,
            )
        try:
            value = await _unary(handler, call.op, _base_url(request))
            return rpc_result(call, value)
        except Exception as exc:
            code, message = _error_of(exc)
            return rpc_error(call.id, code, message, call.dialect)

    app.route("GET", CARD_PATH, card_route, public=True)
    app.route("POST", A2A_PATH, rpc_route, public=not require_token)
