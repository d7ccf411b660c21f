"""A client for an existing A2A server (any framework's, over HTTP): its card, and a task
sent to it with the events it streams back.

It speaks A2A v1.0 or v0.3 JSON-RPC, whichever the server's card offers
(:func:`protocols.a2a.client.choose_interface`), with streaming (Server-Sent Events) when the
card says the server streams, else one blocking ``SendMessage``. A remote server is
another party: every reply is size-bounded and validated by the project's own decoders,
every wait has a deadline, and whatever goes wrong is one :class:`RemoteAgentError`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable

import httpx
import trio

from meshnode.errors import MeshnodeError
from protocols.a2a import (
    AgentCard,
    Message,
    SendMessage,
    SendStreamingMessage,
    StreamEvent,
    TaskStatusUpdateEvent,
)
from protocols.a2a.client import (
    MAX_REPLY,
    RemoteError,
    SseDecoder,
    choose_interface,
    parse_reply,
    send_result,
    stream_event,
)
from protocols.a2a.dialects import V1, Dialect
from protocols.a2a.json_decode import from_json
from protocols.a2a.jsonrpc import final_state, rpc_request
from protocols.errors import ProtocolError

CARD_PATH = "/.well-known/agent-card.json"
CONNECT_TIMEOUT_S = 5.0
#: Everything one task may read from the server (all events together).
MAX_TASK_BYTES = 8 * 1024 * 1024
MAX_EVENTS = 10_000

OnEvent = Callable[[StreamEvent], Awaitable[None]]


class RemoteAgentError(MeshnodeError):
    """An A2A server could not be used: unreachable, refusing, too slow, or answering
    something that is not A2A."""


def _card_url(url: str) -> str:
    return url if url.endswith(".json") else url.rstrip("/") + CARD_PATH


class A2AServer:
    """One remote A2A server, used through one HTTP client (see :meth:`open`)."""

    def __init__(self, url: str, *, token: str = "") -> None:
        self.url = url
        self.card_url = _card_url(url)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http: httpx.AsyncClient | None = None
        self.card: AgentCard | None = None
        self.endpoint = ""
        self.dialect: Dialect = V1

    def open(self) -> httpx.AsyncClient:
        """The HTTP client; ``async with server.open():`` around the server's use."""
        self._http = httpx.AsyncClient(headers=self._headers, follow_redirects=False,
                                       timeout=httpx.Timeout(30.0, connect=CONNECT_TIMEOUT_S))
        return self._http

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            raise RuntimeError("A2AServer.open() first")
        return self._http

    async def fetch_card(self, *, timeout: float) -> AgentCard:
        """Read, validate and keep the server's agent card."""
        try:
            with trio.fail_after(timeout):
                body = await self._get(self.card_url)
                card = from_json(AgentCard, json.loads(body), V1)
                endpoint, dialect = choose_interface(card, self.url)
        except trio.TooSlowError:
            raise RemoteAgentError(f"{self.card_url}: no agent card within {timeout:g} s") \
                from None
        except (ValueError, RecursionError, ProtocolError) as exc:
            raise RemoteAgentError(f"{self.card_url}: not an A2A agent card: {exc}") from None
        self.card, self.endpoint, self.dialect = card, endpoint, dialect
        return card

    async def _get(self, url: str) -> bytes:
        try:
            async with self._client().stream("GET", url) as response:
                self._check_status(response)
                return await _read_all(response, MAX_REPLY)
        except httpx.HTTPError as exc:
            raise RemoteAgentError(f"{url}: {type(exc).__name__}: {exc}") from None

    @staticmethod
    def _check_status(response: httpx.Response) -> None:
        if response.status_code in (401, 403):
            raise RemoteAgentError(f"{response.url}: refused (HTTP {response.status_code}): "
                                   "check the agent's token")
        if response.status_code != 200:
            raise RemoteAgentError(f"{response.url}: HTTP {response.status_code}")

    async def send(self, message: Message, on_event: OnEvent, *, timeout: float) -> None:
        """Send ``message`` as a new task; every event the server sends goes to
        ``on_event``, until a final one. RemoteAgentError for any failure (its error
        replies included), after ``timeout`` seconds at the latest."""
        if self.card is None:
            raise RemoteAgentError(f"{self.url}: its agent card has not been read yet")
        streaming = self.card.capabilities.streaming
        op = SendStreamingMessage(message) if streaming else SendMessage(message)
        request = rpc_request(str(uuid.uuid4()), op, self.dialect)
        headers = {"A2A-Version": "1.0" if self.dialect == V1 else "0.3",
                   "Accept": "text/event-stream" if streaming else "application/json"}
        try:
            with trio.fail_after(timeout):
                async with self._client().stream(
                    "POST", self.endpoint, json=request, headers=headers,
                    timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_S)),
                ) as response:
                    self._check_status(response)
                    await self._events(response, on_event)
        except trio.TooSlowError:
            raise RemoteAgentError(f"no answer within {timeout:.0f} s") from None
        except httpx.HTTPError as exc:
            raise RemoteAgentError(f"{self.endpoint}: {type(exc).__name__}: {exc}") from None
        except RemoteError as exc:
            raise RemoteAgentError(f"the server answered error {exc.code}: {exc.message}") \
                from None
        except ProtocolError as exc:
            raise RemoteAgentError(f"the server's answer is not valid A2A: {exc}") from None

    async def _events(self, response: httpx.Response, on_event: OnEvent) -> None:
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "text/event-stream":
            # A plain JSON-RPC response: SendMessage's answer, or an early error.
            result = parse_reply(await _read_all(response, MAX_REPLY))
            answer = send_result(result, self.dialect) if "kind" in result or any(
                k in result for k in ("task", "message")) else stream_event(result, self.dialect)
            await on_event(answer)
            return
        decoder = SseDecoder()
        total = events = 0
        async for chunk in response.aiter_raw():
            total += len(chunk)
            if total > MAX_TASK_BYTES:
                raise RemoteAgentError(f"the server sent more than {MAX_TASK_BYTES} bytes")
            for payload in decoder.feed(chunk):
                events += 1
                if events > MAX_EVENTS:
                    raise RemoteAgentError(f"the server sent more than {MAX_EVENTS} events")
                event = stream_event(parse_reply(payload), self.dialect)
                await on_event(event)
                if _final(event):
                    return


def _final(event: StreamEvent) -> bool:
    if isinstance(event, Message):
        return True
    return isinstance(event, TaskStatusUpdateEvent) and (event.final or final_state(
        event.status.state))


async def _read_all(response: httpx.Response, limit: int) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > limit:
            raise RemoteAgentError(f"{response.url}: answer larger than {limit} bytes")
    return bytes(body)
