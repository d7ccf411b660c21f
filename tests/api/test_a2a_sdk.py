"""The real a2a-sdk client (asyncio, httpx) against serve_api + add_a2a_routes on loopback.

The server runs on its own trio loop in a background thread; each test drives the sdk client
with ``asyncio.run``. The bearer token goes in the headers of the httpx client handed to the
sdk (``ClientConfig(httpx_client=...)``), which the sdk uses for the card and every call.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
import trio
from a2a.client import (
    A2ACardResolver,
    A2AClientError,
    AuthInterceptor,
    Client,
    ClientCallContext,
    ClientConfig,
    ClientFactory,
    CredentialService,
)
from a2a.compat.v0_3 import types as v03
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    TaskNotCancelableError,
    TaskNotFoundError,
    TaskState,
)

from meshnode.api.a2a_http import A2A_PATH, add_a2a_routes
from meshnode.api.app import ApiApp, serve_api
from tests.protocols.a2a.helpers import TOKEN, FakeHandler

T = TypeVar("T")
SLOW_S = 1.2  # gap between the events of a "slow" stream: longer than the client's read timeout
HEARTBEAT_S = 0.2
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Server:
    url: str
    handler: FakeHandler


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    handler = FakeHandler(slow_s=SLOW_S)
    app = ApiApp(TOKEN)
    add_a2a_routes(app, lambda _owner: handler, require_token=True, heartbeat_s=HEARTBEAT_S)
    started = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        box["token"] = trio.lowlevel.current_trio_token()
        box["shutdown"] = shutdown = trio.Event()
        async with trio.open_nursery() as nursery:
            box["url"] = await nursery.start(serve_api, app, "127.0.0.1:0", shutdown)
            started.set()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # reported by the fixture, not lost in the thread
            box["error"] = exc
            started.set()

    thread = threading.Thread(target=run, name="a2a-test-server", daemon=True)
    thread.start()
    assert started.wait(15), "the API server did not start"
    assert "error" not in box, box.get("error")
    try:
        yield Server(box["url"], handler)
    finally:
        trio.from_thread.run_sync(box["shutdown"].set, trio_token=box["token"])
        thread.join(15)
        assert not thread.is_alive()


def run(flow: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(flow(), timeout=20)

    return asyncio.run(bounded())


def user_message(text: str) -> Message:
    return Message(role=Role.ROLE_USER, message_id=f"m-{text}", parts=[Part(text=text)])


async def client_for(
    http: httpx.AsyncClient, url: str, *, streaming: bool, interceptors: list[Any] | None = None
) -> Client:
    card = await A2ACardResolver(http, url).get_agent_card()
    config = ClientConfig(httpx_client=http, streaming=streaming)
    return ClientFactory(config).create(card, interceptors)


async def send(client: Client, text: str) -> list[StreamResponse]:
    request = SendMessageRequest(message=user_message(text))
    return [event async for event in client.send_message(request)]


# ---- the card -----------------------------------------------------------------------------------


def test_fetch_card(server: Server) -> None:
    async def flow() -> Any:
        async with httpx.AsyncClient(headers=AUTH, timeout=5) as http:
            return await A2ACardResolver(http, server.url).get_agent_card()

    card = run(flow)
    assert card.name == "Echo agent" and card.version == "1.2.3"
    assert card.capabilities.streaming
    assert [s.id for s in card.skills] == ["echo"]
    assert list(card.skills[0].tags) == ["test", "echo"]
    assert [(i.url, i.protocol_binding, i.protocol_version) for i in card.supported_interfaces] == [
        (server.url + A2A_PATH, "JSONRPC", "1.0"),
        (server.url + A2A_PATH, "JSONRPC", "0.3.0"),
    ]
    scheme = card.security_schemes["bearer"]
    assert scheme.http_auth_security_scheme.scheme.lower() == "bearer"


def test_card_without_token_is_public_and_names_the_bearer_scheme(server: Server) -> None:
    async def flow() -> Any:
        async with httpx.AsyncClient(timeout=5) as http:
            return await A2ACardResolver(http, server.url).get_agent_card()

    card = run(flow)
    assert card.name == "Echo agent"
    assert card.security_schemes["bearer"].http_auth_security_scheme.scheme.lower() == "bearer"


# ---- unary --------------------------------------------------------------------------------------


def test_send_message_get_list_cancel(server: Server) -> None:
    async def flow() -> tuple[Any, ...]:
        async with httpx.AsyncClient(headers=AUTH, timeout=5) as http:
            client = await client_for(http, server.url, streaming=False)
            events = await send(client, "hello")
            task = events[0].task
            got = await client.get_task(GetTaskRequest(id=task.id))
            listing = await client.list_tasks(ListTasksRequest(context_id=task.context_id))
            with pytest.raises(TaskNotCancelableError):
                await client.cancel_task(CancelTaskRequest(id=task.id))
            with pytest.raises(TaskNotFoundError):
                await client.get_task(GetTaskRequest(id="no-such-task"))
            waiting = (await send(client, "wait"))[0].task
            canceled = await client.cancel_task(CancelTaskRequest(id=waiting.id))
            return events, got, listing, canceled

    events, got, listing, canceled = run(flow)
    assert len(events) == 1 and events[0].HasField("task")
    task = events[0].task
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert task.status.message.parts[0].text == "echo: hello"
    assert task.artifacts[0].parts[0].text == "echo: hello"
    assert [m.role for m in task.history] == [Role.ROLE_USER, Role.ROLE_AGENT]
    assert got.id == task.id and got.status.state == TaskState.TASK_STATE_COMPLETED
    assert [t.id for t in listing.tasks] == [task.id] and listing.total_size == 1
    assert canceled.status.state == TaskState.TASK_STATE_CANCELED


def test_send_message_answered_with_a_message(server: Server) -> None:
    async def flow() -> list[StreamResponse]:
        async with httpx.AsyncClient(headers=AUTH, timeout=5) as http:
            return await send(await client_for(http, server.url, streaming=False), "message")

    (event,) = run(flow)
    assert event.HasField("message") and event.message.role == Role.ROLE_AGENT
    assert event.message.parts[0].text == "a message, not a task"


def test_sdk_client_with_wrong_token_is_refused(server: Server) -> None:
    async def flow() -> None:
        async with httpx.AsyncClient(headers=AUTH, timeout=5) as http:
            card = await A2ACardResolver(http, server.url).get_agent_card()
        async with httpx.AsyncClient(headers={"Authorization": "Bearer nope"}, timeout=5) as bad:
            client = ClientFactory(ClientConfig(httpx_client=bad, streaming=False)).create(card)
            await send(client, "hello")

    with pytest.raises(A2AClientError, match="401"):
        run(flow)


class TokenStore(CredentialService):
    async def get_credentials(
        self, security_scheme_name: str, context: ClientCallContext | None
    ) -> str | None:
        return TOKEN if security_scheme_name == "bearer" else None


def test_token_from_the_cards_security_scheme(server: Server) -> None:
    """A client that learns the scheme from the card adds the token itself (AuthInterceptor)."""

    async def flow() -> list[StreamResponse]:
        async with httpx.AsyncClient(headers=AUTH, timeout=5) as http:
            card = await A2ACardResolver(http, server.url).get_agent_card()
        async with httpx.AsyncClient(timeout=5) as plain:
            config = ClientConfig(httpx_client=plain, streaming=True)
            client = ClientFactory(config).create(card, [AuthInterceptor(TokenStore())])
            return await send(client, "via interceptor")

    events = run(flow)
    assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED


# ---- streaming ----------------------------------------------------------------------------------


def test_streaming(server: Server) -> None:
    async def flow() -> list[StreamResponse]:
        async with httpx.AsyncClient(headers=AUTH, timeout=5) as http:
            return await send(await client_for(http, server.url, streaming=True), "stream me")

    events = run(flow)
    assert [e.WhichOneof("payload") for e in events] == [
        "task",
        "status_update",
        "artifact_update",
        "status_update",
    ]
    task_id = events[0].task.id
    assert events[0].task.status.state == TaskState.TASK_STATE_SUBMITTED
    assert events[1].status_update.task_id == task_id
    assert events[1].status_update.status.state == TaskState.TASK_STATE_WORKING
    assert events[2].artifact_update.artifact.parts[0].text == "echo: stream me"
    assert events[2].artifact_update.last_chunk
    final = events[3].status_update.status
    assert final.state == TaskState.TASK_STATE_COMPLETED
    assert final.message.parts[0].text == "echo: stream me"


def test_streaming_error_reaches_the_client(server: Server) -> None:
    async def flow() -> list[StreamResponse]:
        async with httpx.AsyncClient(headers=AUTH, timeout=5) as http:
            return await send(await client_for(http, server.url, streaming=True), "fail")

    with pytest.raises(TaskNotFoundError, match="lost the task"):
        run(flow)


def test_slow_stream_survives_the_clients_read_timeout(server: Server) -> None:
    """Events 1.2 s apart, a client that gives up after 0.6 s of silence: the heartbeat
    comments keep the stream alive."""

    async def flow() -> list[StreamResponse]:
        async with httpx.AsyncClient(headers=AUTH, timeout=0.6) as http:
            return await send(await client_for(http, server.url, streaming=True), "slow")

    events = run(flow)
    assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED


# ---- raw JSON-RPC with the v0.3 method names ----------------------------------------------------


def rpc03(method: str, params: dict[str, Any], rid: Any = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}


MESSAGE_V03 = {
    "kind": "message",
    "messageId": "m-raw",
    "role": "user",
    "parts": [{"kind": "text", "text": "raw"}],
}


def test_v03_methods_with_raw_httpx(server: Server) -> None:
    async def flow() -> tuple[Any, ...]:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=5) as http:
            sent = (
                await http.post(A2A_PATH, json=rpc03("message/send", {"message": MESSAGE_V03}))
            ).json()
            task_id = sent["result"]["id"]
            got = (await http.post(A2A_PATH, json=rpc03("tasks/get", {"id": task_id}, "g"))).json()
            cancel = (await http.post(A2A_PATH, json=rpc03("tasks/cancel", {"id": task_id}))).json()
            unknown = (await http.post(A2A_PATH, json=rpc03("tasks/list", {}))).json()
            async with http.stream(
                "POST", A2A_PATH, json=rpc03("message/stream", {"message": MESSAGE_V03}, 5)
            ) as response:
                content_type = response.headers["content-type"]
                lines = [line async for line in response.aiter_lines()]
            return sent, got, cancel, unknown, content_type, lines

    sent, got, cancel, unknown, content_type, lines = run(flow)
    task = v03.Task.model_validate(sent["result"])
    assert task.status.state == v03.TaskState.completed
    assert sent["id"] == 1 and got["id"] == "g"
    assert v03.Task.model_validate(got["result"]).id == task.id
    assert cancel["error"]["code"] == -32002  # TaskNotCancelable: it is completed
    assert unknown["error"]["code"] == -32601
    assert content_type.startswith("text/event-stream")
    events = [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: ")]
    results = [v03.SendStreamingMessageSuccessResponse.model_validate(e).result for e in events]
    assert [r.kind for r in results] == [
        "task",
        "status-update",
        "artifact-update",
        "status-update",
    ]
    assert all(e["id"] == 5 for e in events)
    assert isinstance(results[-1], v03.TaskStatusUpdateEvent) and results[-1].final


def test_raw_calls_without_token_are_401_but_the_card_is_public(server: Server) -> None:
    async def flow() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
            return [
                await http.post(A2A_PATH, json=rpc03("message/send", {"message": MESSAGE_V03})),
                await http.post(A2A_PATH, json=rpc03("message/stream", {"message": MESSAGE_V03})),
                await http.get("/.well-known/agent-card.json"),
            ]

    *calls, card = run(flow)
    for response in calls:
        assert response.status_code == 401
        assert response.json() == {"error": "missing or wrong API token"}
    assert card.status_code == 200 and "bearer" in card.json()["securitySchemes"]
