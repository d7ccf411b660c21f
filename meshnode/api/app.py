"""The local HTTP API: a small ASGI app served by hypercorn on trio.

Every call needs ``Authorization: Bearer <token>`` with the token from the node home, except
on routes added with ``public=True``. Every request must name this server in its ``Host``
header (localhost, an IP address, or one of ``allowed_hosts``), else 421; and one sent by
a web page (an ``Origin`` header) must come from this same origin or an allowed host, else
403: a hostile page cannot reach the API through DNS rebinding or a cross-site request.

Handlers are plain async functions from a :class:`Request` to a JSON-able value, or to a
:class:`StreamingResponse` whose chunks are sent as they come (Server-Sent Events, for
example). A handler that fails raises: the error becomes a JSON body ``{"error": message}``
with the status :func:`meshnode.errors.http_status` gives it (:class:`HttpError` carries
its own).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from meshnode.errors import MeshnodeError, http_status, reported

log = logging.getLogger(__name__)
MAX_BODY = 8 * 1024 * 1024


class HttpError(MeshnodeError):
    """A handler's refusal of a request, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = status


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    #: Header names in lower case; of a repeated header, the last value.
    headers: dict[str, str] = field(default_factory=dict)
    scheme: str = "http"
    #: Whether the request carried the API token (public routes are reached without it).
    authorised: bool = False
    #: The client's address, as the server saw it ("" if unknown).
    client: str = ""

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body or b"{}")
        except ValueError:
            raise HttpError(400, "request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise HttpError(400, "request body must be a JSON object")
        return data

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default


@dataclass(frozen=True, slots=True)
class StreamingResponse:
    """A response sent while it is produced: each chunk of ``chunks`` goes out at once.

    When ``heartbeat`` is set it is sent whenever ``heartbeat_s`` seconds pass without a
    chunk (an SSE comment, say), so that clients and proxies do not time the stream out.
    The chunks are iterated in one task, and the iteration is cancelled (and the iterator
    closed) when the client disconnects. An exception from ``chunks`` is logged and ends the
    body: the status line is already sent by then.
    """

    content_type: str
    chunks: AsyncIterator[bytes]
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    heartbeat: bytes | None = None
    heartbeat_s: float = 15.0


Handler = Callable[[Request], Awaitable[Any]]
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Route:
    handler: Handler
    public: bool


def _hostname(authority: str) -> str:
    """The host name of ``host[:port]`` (an IPv6 literal without its brackets), lower case;
    "" for anything else."""
    if any(c in authority for c in "@/?#\\ "):
        return ""
    try:
        return (urlsplit("//" + authority).hostname or "").lower()
    except ValueError:  # a malformed port or bracket
        return ""


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class ApiApp:
    def __init__(self, token: str, *, allowed_hosts: Iterable[str] = ()) -> None:
        self._token = token.encode()
        self._routes: dict[tuple[str, str], _Route] = {}
        # A DNS-rebinding page reaches this server under its own host name, never under an
        # IP address: names other than these are refused.
        self._hosts = {"localhost", *(h.lower() for h in allowed_hosts)}

    def host_allowed(self, host: str) -> bool:
        name = _hostname(host)
        return bool(name) and (_is_ip(name) or name in self._hosts)

    def origin_allowed(self, origin: str, host: str) -> bool:
        """A page's origin may call: this same origin, or an allowed host's page."""
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False  # "null" (a sandboxed frame, a file) or garbage
        return parts.netloc.lower() == host.lower() or _hostname(parts.netloc) in self._hosts

    def route(self, method: str, path: str, handler: Handler, public: bool = False) -> None:
        """Serve ``method path`` with ``handler``; a ``public`` route needs no API token."""
        self._routes[(method, path)] = _Route(handler, public)

    def _authorised(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value.startswith(b"Bearer "):
                return hmac.compare_digest(value[7:], self._token)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            status, payload = 200, await self._dispatch(scope, receive)
        except Exception as exc:
            # One mapping from errors to statuses (meshnode.errors); handlers just raise.
            status, payload = http_status(exc), {"error": str(exc)}
            if reported(exc) is None:  # a bug: keep its traceback
                log.exception("API handler failed", extra={"path": scope.get("path")})
                payload = {"error": f"internal error: {exc}"}
            elif status >= 500:
                log.warning("API request failed", extra={"path": scope.get("path"),
                                                         "error": str(exc)})
        if isinstance(payload, StreamingResponse):
            await _send_stream(payload, receive, send)
            return
        body = json.dumps(payload, default=str).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="meshnode"'))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _dispatch(self, scope: Scope, receive: Receive) -> Any:
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope.get("headers", [])
        }
        # Browsers always name the host; a client that names none is no web page.
        host = headers.get("host")
        if host is not None and not self.host_allowed(host):
            raise HttpError(421, f"this server does not answer for host {host[:80]!r} (see "
                                 "api.allowed_hosts)")
        origin = headers.get("origin")
        if origin is not None and not self.origin_allowed(origin, host or ""):
            raise HttpError(403, f"requests from pages of {origin[:80]!r} are refused")
        route = self._routes.get((scope["method"], scope["path"]))
        authorised = self._authorised(scope)
        # Authorisation comes before routing, so that without the token nothing about the
        # private routes (not even which paths exist) can be learnt.
        if not (route is not None and route.public) and not authorised:
            raise HttpError(401, "missing or wrong API token")
        if route is None:
            known = any(path == scope["path"] for _, path in self._routes)
            raise HttpError(405 if known else 404, f"no route {scope['method']} {scope['path']}")
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                raise HttpError(413, f"request body over {MAX_BODY} bytes")
            if not message.get("more_body"):
                break
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        client = scope.get("client") or ("", 0)
        request = Request(
            scope["method"], scope["path"], query, bytes(body), headers,
            scope.get("scheme", "http"), authorised, str(client[0]),
        )
        return await route.handler(request)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _send_stream(response: StreamingResponse, receive: Receive, send: Send) -> None:
    headers = [
        (b"content-type", response.content_type.encode("latin-1")),
        (b"cache-control", b"no-cache"),
        *((k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers),
    ]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    interval = math.inf if response.heartbeat is None else response.heartbeat_s
    chunks_in, chunks_out = trio.open_memory_channel[bytes](0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
        nursery.start_soon(_produce, response.chunks, chunks_in)
        async with chunks_out:
            while True:
                chunk = response.heartbeat or b""
                with trio.move_on_after(interval):
                    try:
                        chunk = await chunks_out.receive()
                    except trio.EndOfChannel:
                        break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        nursery.cancel_scope.cancel()
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _produce(chunks: AsyncIterator[bytes], out: trio.MemorySendChannel[bytes]) -> None:
    async with out:
        try:
            async for chunk in chunks:
                await out.send(chunk)
        except Exception:
            log.exception("streaming response failed")
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()


async def _cancel_on_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    """Once the request body is read, the next ASGI message is the client's disconnect."""
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def serve_api(
    app: ApiApp,
    listen: str,
    shutdown: trio.Event,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``shutdown`` is set; reports the bound http://host:port when started."""
    config = Config()
    config.bind = [listen]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 2.0

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(serve, app, config, shutdown_trigger=shutdown.wait, mode="asgi")
        )
        task_status.started(binds[0])
