"""A2A routes and streaming responses, through the ASGI app in-process (no sockets)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshnode.api.a2a_http import A2A_PATH, CARD_PATH, add_a2a_routes
from meshnode.api.app import ApiApp, HttpError, Request, StreamingResponse
from protocols.a2a import (
    INTERNAL_ERROR,
    INVALID_AGENT_RESPONSE,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    TASK_NOT_CANCELABLE,
    TASK_NOT_FOUND,
    VERSION_NOT_SUPPORTED,
    GetTask,
    Message,
    Operation,
    SendMessage,
    SendStreamingMessage,
    Task,
    TaskState,
    TextPart,
)
from protocols.a2a.dialects import V03, V1
from protocols.a2a.json_decode import from_json
from protocols.a2a.jsonrpc import rpc_request
from tests.protocols.a2a.helpers import TOKEN, FakeHandler, Reply, call, operations

FUZZ = settings(
    deadline=timedelta(seconds=2), max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)


def make_app(*, require_token: bool = True, heartbeat_s: float = 4.0) -> tuple[ApiApp, FakeHandler]:
    app = ApiApp(TOKEN)
    handler = FakeHandler(slow_s=0.5)
    add_a2a_routes(app, lambda _owner: handler, require_token=require_token,
                   heartbeat_s=heartbeat_s)

    async def status(request: Request) -> dict[str, Any]:
        return {"ok": True}

    app.route("GET", "/v1/status", status)
    return app, handler


def user(text: str) -> Message:
    return Message("user", (TextPart(text),), f"m-{text}")


async def rpc(app: ApiApp, op: Operation, dialect: Any = V1, **kwargs: Any) -> Reply:
    return await call(app, "POST", A2A_PATH, rpc_request(1, op, dialect), **kwargs)


def error_code(reply: Reply) -> int:
    assert reply.status == 200
    assert reply.headers[b"content-type"] == b"application/json"
    body = reply.json()
    assert body["jsonrpc"] == "2.0" and "result" not in body
    code: int = body["error"]["code"]
    return code


# ---- the agent card -----------------------------------------------------------------------------


async def test_card_points_at_this_server() -> None:
    app, _ = make_app()
    reply = await call(app, "GET", CARD_PATH)
    assert reply.status == 200
    card = reply.json()
    assert card["name"] == "Echo agent"
    assert card["supportedInterfaces"] == [
        {
            "url": "http://localhost:7700/a2a",
            "protocolBinding": "JSONRPC",
            "protocolVersion": "1.0",
        },
        {
            "url": "http://localhost:7700/a2a",
            "protocolBinding": "JSONRPC",
            "protocolVersion": "0.3.0",
        },
    ]
    assert card["url"] == "http://localhost:7700/a2a"
    assert card["capabilities"]["streaming"] is True
    # token-protected: the card says how to authenticate
    assert card["securityRequirements"] == [{"schemes": {"bearer": {"list": []}}}]
    assert card["securitySchemes"]["bearer"]["httpAuthSecurityScheme"] == {"scheme": "Bearer"}


async def test_card_url_is_not_taken_from_a_forged_host() -> None:
    app, _ = make_app()
    for forged in (b"evil.example/x?y", b"evil.example", b"127.0.0.1@evil.example"):
        reply = await call(app, "GET", CARD_PATH, headers=[(b"host", forged)])
        assert reply.status == 421 and "url" not in reply.json()


async def test_public_card_has_no_security() -> None:
    app, _ = make_app(require_token=False)
    reply = await call(app, "GET", CARD_PATH, token=None)
    assert reply.status == 200
    assert "securitySchemes" not in reply.json() and "securityRequirements" not in reply.json()


async def test_get_extended_card_over_rpc() -> None:
    from protocols.a2a import GetAgentCard

    app, _ = make_app()
    result = (await rpc(app, GetAgentCard())).json()["result"]
    assert result["supportedInterfaces"][0]["url"] == "http://localhost:7700/a2a"
    assert "url" not in result  # the pure v1.0 card
    result = (await rpc(app, GetAgentCard(), V03)).json()["result"]
    assert result["url"] == "http://localhost:7700/a2a" and result["protocolVersion"] == "0.3.0"


# ---- authorisation ------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong", ""])
async def test_card_is_public_and_says_how_to_authenticate(token: str | None) -> None:
    app, _ = make_app()
    reply = await call(app, "GET", CARD_PATH, token=token)
    assert reply.status == 200
    assert reply.json()["securitySchemes"]["bearer"]["scheme"] == "Bearer"


@pytest.mark.parametrize("token", [None, "wrong", ""])
async def test_token_required(token: str | None) -> None:
    app, handler = make_app()
    for reply in (
        await rpc(app, SendMessage(user("hi")), token=token),
        await rpc(app, SendStreamingMessage(user("hi")), token=token),
    ):
        assert reply.status == 401
        assert reply.json() == {"error": "missing or wrong API token"}
        assert reply.headers[b"www-authenticate"].startswith(b"Bearer")
    assert handler.tasks == {}


async def test_public_routes_need_no_token_but_others_still_do() -> None:
    app, _ = make_app(require_token=False)
    reply = await rpc(app, SendMessage(user("hi")), token=None)
    assert reply.json()["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
    assert (await call(app, "GET", "/v1/status", token=None)).status == 401
    assert (await call(app, "GET", A2A_PATH, token=None)).status == 401  # no public GET /a2a
    assert (await call(app, "GET", "/v1/status")).status == 200


# ---- unary calls --------------------------------------------------------------------------------


async def test_send_message_v1_and_v03() -> None:
    app, handler = make_app()
    body = (await rpc(app, SendMessage(user("hello")))).json()
    assert body["id"] == 1
    task = from_json(Task, body["result"]["task"])
    assert task.status.state == TaskState.COMPLETED
    assert task.artifacts[0].text == "echo: hello"
    body = (await rpc(app, SendMessage(user("hello")), V03)).json()
    assert body["result"]["kind"] == "task"
    assert body["result"]["status"]["state"] == "completed"
    assert len(handler.tasks) == 2


async def test_message_answer() -> None:
    app, _ = make_app()
    result = (await rpc(app, SendMessage(user("message")))).json()["result"]
    assert list(result) == ["message"]
    assert result["message"]["role"] == "ROLE_AGENT"


async def test_get_cancel_and_list() -> None:
    app, handler = make_app()
    done = from_json(Task, (await rpc(app, SendMessage(user("x")))).json()["result"]["task"])
    waiting = from_json(Task, (await rpc(app, SendMessage(user("wait")))).json()["result"]["task"])
    got = (await rpc(app, GetTask(done.id, history_length=0))).json()["result"]
    assert got["id"] == done.id and "history" not in got
    from protocols.a2a import CancelTask, ListTasks

    assert error_code(await rpc(app, CancelTask(done.id))) == TASK_NOT_CANCELABLE
    canceled = (await rpc(app, CancelTask(waiting.id), V03)).json()["result"]
    assert canceled["status"]["state"] == "canceled"
    listing = (await rpc(app, ListTasks(state=TaskState.CANCELED))).json()["result"]
    assert [t["id"] for t in listing["tasks"]] == [waiting.id]
    assert error_code(await rpc(app, GetTask("nope"))) == TASK_NOT_FOUND
    assert error_code(await rpc(app, GetTask("nope"), V03)) == TASK_NOT_FOUND
    assert len(handler.tasks) == 2


@pytest.mark.parametrize(
    ("text", "code"),
    [("fail", INVALID_PARAMS), ("boom", INTERNAL_ERROR), ("wrong-type", INVALID_AGENT_RESPONSE)],
)
async def test_handler_failures_are_jsonrpc_errors(
    text: str, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    app, _ = make_app()
    reply = await rpc(app, SendMessage(user(text)))
    assert error_code(reply) == code
    assert reply.json()["id"] == 1
    if text == "boom":
        assert "handler exploded" in reply.json()["error"]["message"]
        assert any(r.exc_info for r in caplog.records)  # logged with its traceback


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{", PARSE_ERROR),
        (b'{"jsonrpc": "2.0", "id": 3, "method": "tasks/fly"}', METHOD_NOT_FOUND),
        (b'{"jsonrpc": "2.0", "id": 3, "method": "GetTask", "params": {"id": 5}}', INVALID_PARAMS),
    ],
)
async def test_bad_requests(body: bytes, code: int) -> None:
    app, _ = make_app()
    assert error_code(await call(app, "POST", A2A_PATH, body)) == code


async def test_unsupported_a2a_version_header() -> None:
    app, _ = make_app()
    for version, ok in [("1.0", True), ("1", True), ("0.3", True), ("0.3.0", True), ("2.0", False)]:
        reply = await rpc(app, GetTask("nope"), headers=[(b"a2a-version", version.encode())])
        assert error_code(reply) == (TASK_NOT_FOUND if ok else VERSION_NOT_SUPPORTED)


@FUZZ
@given(st.binary(max_size=200) | operations.map(lambda op: json.dumps(rpc_request(1, op)).encode()))
async def test_any_body_gets_a_jsonrpc_answer(body: bytes) -> None:
    app, _ = make_app(heartbeat_s=0.05)
    with trio.fail_after(5):
        reply = await call(app, "POST", A2A_PATH, body)
    assert reply.status == 200 and reply.ended
    if reply.headers[b"content-type"] == b"text/event-stream":
        events = reply.sse()
        assert events and all(e["jsonrpc"] == "2.0" for _, e in events)
    else:
        answer = reply.json()
        assert ("result" in answer) != ("error" in answer)


# ---- streaming ----------------------------------------------------------------------------------


async def test_stream_v1() -> None:
    app, handler = make_app()
    reply = await rpc(app, SendStreamingMessage(user("hello")))
    assert reply.status == 200 and reply.ended
    assert reply.headers[b"content-type"] == b"text/event-stream"
    assert reply.headers[b"cache-control"] == b"no-cache"
    events = reply.sse()
    assert [name for name, _ in events] == ["message"] * 4
    assert [list(e["result"]) for _, e in events] == [
        ["task"],
        ["statusUpdate"],
        ["artifactUpdate"],
        ["statusUpdate"],
    ]
    assert all(e["id"] == 1 for _, e in events)
    assert events[-1][1]["result"]["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"
    assert len(reply.chunks) == 4  # one chunk per event, sent as it came
    assert handler.stream_closed == ["task-0"]


async def test_stream_v03() -> None:
    app, _ = make_app()
    events = (await rpc(app, SendStreamingMessage(user("hello")), V03)).sse()
    kinds = [e["result"]["kind"] for _, e in events]
    assert kinds == ["task", "status-update", "artifact-update", "status-update"]
    assert events[-1][1]["result"]["final"] is True


@pytest.mark.parametrize(
    ("text", "code"),
    [("fail", TASK_NOT_FOUND), ("boom", INTERNAL_ERROR), ("wrong-type", INVALID_AGENT_RESPONSE)],
)
@pytest.mark.parametrize("dialect", [V1, V03])
async def test_stream_failure_is_a_final_error_event(text: str, code: int, dialect: Any) -> None:
    app, handler = make_app()
    reply = await rpc(app, SendStreamingMessage(user(text)), dialect)
    assert reply.status == 200 and reply.ended
    events = reply.sse()
    assert "result" in events[0][1]
    name, last = events[-1]
    assert last["error"]["code"] == code and last["id"] == 1
    assert name == ("error" if dialect == V1 else "message")
    assert handler.stream_closed == ["task-0"]


async def test_idle_stream_sends_heartbeats() -> None:
    app, _ = make_app(heartbeat_s=0.05)
    reply = await rpc(app, SendStreamingMessage(user("slow")))  # 0.5 s between events
    heartbeats = [c for c in reply.chunks if c == b": keep-alive\n\n"]
    assert len(heartbeats) >= 5
    assert len(reply.sse()) == 4


async def test_client_disconnect_stops_the_stream() -> None:
    app, handler = make_app()
    gone = trio.Event()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            result: list[Reply] = []

            async def request() -> None:
                disconnect = gone
                result.append(
                    await rpc(app, SendStreamingMessage(user("hang")), disconnect=disconnect)
                )

            nursery.start_soon(request)
            await handler.stream_started.wait()
            await trio.sleep(0.05)
            assert handler.stream_closed == []
            gone.set()
    assert handler.stream_closed == ["task-0"]  # the handler's stream was closed
    assert len(result[0].sse()) == 1


# ---- StreamingResponse in api.py ----------------------------------------------------------------


async def test_streaming_response_chunks_and_headers() -> None:
    app = ApiApp(TOKEN)

    async def chunks() -> AsyncIterator[bytes]:
        for word in (b"one ", b"two ", b"three"):
            yield word

    async def stream(request: Request) -> StreamingResponse:
        return StreamingResponse("text/plain", chunks(), status=201, headers=(("x-extra", "yes"),))

    app.route("GET", "/v1/stream", stream)
    reply = await call(app, "GET", "/v1/stream")
    assert (reply.status, reply.body, reply.ended) == (201, b"one two three", True)
    assert reply.chunks == [b"one ", b"two ", b"three"]
    assert reply.headers[b"content-type"] == b"text/plain"
    assert reply.headers[b"x-extra"] == b"yes"
    assert b"content-length" not in reply.headers


async def test_streaming_response_error_ends_the_body(caplog: pytest.LogCaptureFixture) -> None:
    app = ApiApp(TOKEN)

    async def chunks() -> AsyncIterator[bytes]:
        yield b"partial"
        raise RuntimeError("producer died")

    async def stream(request: Request) -> StreamingResponse:
        return StreamingResponse("text/plain", chunks())

    app.route("GET", "/v1/stream", stream)
    reply = await call(app, "GET", "/v1/stream")
    assert (reply.status, reply.body, reply.ended) == (200, b"partial", True)
    assert any("streaming response failed" in r.message and r.exc_info for r in caplog.records)


async def test_handler_errors_before_streaming_are_plain_json() -> None:
    app = ApiApp(TOKEN)

    async def refuse(request: Request) -> StreamingResponse:
        raise HttpError(409, "not now")

    app.route("GET", "/v1/stream", refuse)
    reply = await call(app, "GET", "/v1/stream")
    assert (reply.status, reply.json()) == (409, {"error": "not now"})


async def test_request_headers_and_scheme_reach_the_handler() -> None:
    app = ApiApp(TOKEN)
    seen: list[Request] = []

    async def look(request: Request) -> None:
        seen.append(request)

    app.route("GET", "/v1/look", look, public=True)
    await call(app, "GET", "/v1/look", token=None, headers=[(b"X-Thing", b"1"), (b"x-thing", b"2")])
    assert seen[0].header("X-THING") == "2" and seen[0].header("missing", "d") == "d"
    assert seen[0].header("host") == "localhost:7700" and seen[0].scheme == "http"


async def test_each_caller_gets_its_own_handler() -> None:
    """With the token a request is the operator's; without it (public A2A) an anonymous
    client's, known by its address: the handler the node gives each one sees only what that
    owner may."""
    from meshnode.a2a.owners import OPERATOR, Owner, client_owner

    app = ApiApp(TOKEN)
    callers: list[Owner] = []

    def handler_for(owner: Owner) -> FakeHandler:
        callers.append(owner)
        return FakeHandler()

    add_a2a_routes(app, handler_for, require_token=False)
    await rpc(app, GetTask("t"))
    await rpc(app, GetTask("t"), token=None)
    assert callers == [OPERATOR, client_owner("127.0.0.1")]
