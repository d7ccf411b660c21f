"""meshnode.api.app as a bare ASGI app, and DaemonClient against a real serve_api on loopback."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from memory.errors import StoreUnavailable
from meshnode.api import app as api
from meshnode.api.app import ApiApp, HttpError, Request, serve_api
from meshnode.cli.client import DaemonClient
from meshnode.errors import ApiError, DaemonNotRunning, MeshnodeError
from meshnode.node.home import TOKEN_FILE, load_token, write_runtime
from protocols.errors import DecodeError

TOKEN = "s3cret-token"


def auth(token: str = TOKEN) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())]


class Response:
    def __init__(self, messages: list[dict[str, Any]]) -> None:
        assert [m["type"] for m in messages] == ["http.response.start", "http.response.body"]
        self.status: int = messages[0]["status"]
        self.headers = dict(messages[0]["headers"])
        self.body: bytes = messages[1]["body"]

    def json(self) -> Any:
        return json.loads(self.body)


async def call(
    app: ApiApp,
    method: str,
    path: str,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    chunks: list[bytes] | None = None,
    query: bytes = b"",
) -> Response:
    incoming = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for chunks in [chunks or [b""]]
        for i, chunk in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "headers": auth() if headers is None else headers,
    }
    await app(scope, receive, send)
    return Response(sent)


def make_app() -> tuple[ApiApp, list[Request]]:
    app = ApiApp(TOKEN)
    seen: list[Request] = []

    async def echo(request: Request) -> dict[str, Any]:
        seen.append(request)
        return {"method": request.method, "body": request.json(), "x": request.arg("x")}

    async def teapot(request: Request) -> None:
        raise HttpError(418, "short and stout")

    async def broken(request: Request) -> None:
        raise RuntimeError("boom")

    async def milvus_down(request: Request) -> None:
        raise StoreUnavailable("cannot open Milvus at http://m:19530")

    async def malformed(request: Request) -> None:
        raise DecodeError("record.kind: 'a b' must be ASCII letters")

    async def items(request: Request) -> list[int]:
        return [1, 2, 3]

    app.route("POST", "/v1/echo", echo)
    app.route("GET", "/v1/teapot", teapot)
    app.route("GET", "/v1/broken", broken)
    app.route("GET", "/v1/milvus", milvus_down)
    app.route("GET", "/v1/malformed", malformed)
    app.route("GET", "/v1/items", items)
    return app, seen


# ---- the ASGI app -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [],
        auth("wrong"),
        auth(TOKEN + "x"),
        auth(TOKEN[:-1]),
        auth(""),
        [(b"authorization", TOKEN.encode())],  # no "Bearer "
        [(b"authorization", f"Basic {TOKEN}".encode())],
        [(b"x-token", TOKEN.encode())],
    ],
)
async def test_missing_or_wrong_token_is_401(headers: list[tuple[bytes, bytes]]) -> None:
    app, seen = make_app()
    for path in ("/v1/items", "/v1/nope"):  # auth is checked before routing
        response = await call(app, "GET", path, headers=headers)
        assert response.status == 401
        assert response.json() == {"error": "missing or wrong API token"}
        assert response.headers[b"content-type"] == b"application/json"
    response = await call(app, "POST", "/v1/echo", headers=headers, chunks=[b"{}"])
    assert response.status == 401
    assert seen == []  # the handler never ran


@pytest.mark.parametrize(
    ("host", "origin", "status"),
    [
        (b"127.0.0.1:7700", None, 200),
        (b"localhost:7700", None, 200),
        (b"[::1]:7700", None, 200),
        (b"10.0.0.5:7700", None, 200),  # an IP address: no DNS name to rebind
        (b"node1.example.org:7700", None, 200),  # listed in allowed_hosts
        (b"NODE1.example.org", None, 200),
        (None, None, 200),  # no Host at all: no browser sent this
        # DNS rebinding: the attacker's name, resolved to this machine.
        (b"evil.example:7700", None, 421),
        (b"localhost.evil.example:7700", None, 421),
        (b"127.0.0.1@evil.example", None, 421),
        (b"", None, 421),
        # A page of another origin (another site, or another local port).
        (b"127.0.0.1:7700", b"http://evil.example", 403),
        (b"127.0.0.1:7700", b"http://127.0.0.1:8080", 403),
        (b"127.0.0.1:7700", b"null", 403),
        (b"127.0.0.1:7700", b"file://", 403),
        (b"127.0.0.1:7700", b"http://127.0.0.1:7700", 200),  # the dashboard itself
        (b"127.0.0.1:7700", b"https://node1.example.org", 200),
    ],
)
async def test_host_and_origin_are_checked(host: bytes | None, origin: bytes | None,
                                           status: int) -> None:
    app = ApiApp(TOKEN, allowed_hosts=["node1.example.org"])

    async def items(request: Request) -> list[int]:
        return [1, 2, 3]

    app.route("GET", "/v1/items", items, public=True)
    headers = [(b"host", host)] if host is not None else []
    headers += [(b"origin", origin)] if origin is not None else []
    for extra in ([], auth()):  # the token changes nothing
        response = await call(app, "GET", "/v1/items", headers=headers + extra)
        assert response.status == status, response.body
        assert (response.json() == [1, 2, 3]) == (status == 200)


async def test_json_route() -> None:
    app, _ = make_app()
    response = await call(app, "GET", "/v1/items")
    assert (response.status, response.json()) == (200, [1, 2, 3])
    assert response.headers[b"content-type"] == b"application/json"
    assert response.headers[b"content-length"] == str(len(response.body)).encode()


async def test_body_in_chunks_and_query() -> None:
    app, seen = make_app()
    response = await call(
        app, "POST", "/v1/echo", chunks=[b'{"a": ', b'[1, 2], "b"', b': "c"}'], query=b"x=1&x=2"
    )
    assert response.status == 200
    assert response.json() == {"method": "POST", "body": {"a": [1, 2], "b": "c"}, "x": "2"}
    assert len(seen) == 1 and seen[0].query == {"x": ["1", "2"]}


async def test_empty_body_is_an_empty_object() -> None:
    app, _ = make_app()
    response = await call(app, "POST", "/v1/echo")
    assert response.json() == {"method": "POST", "body": {}, "x": None}


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
async def test_bad_json_body_is_400(body: bytes) -> None:
    app, _ = make_app()
    response = await call(app, "POST", "/v1/echo", chunks=[body])
    assert response.status == 400
    assert "JSON" in response.json()["error"]


async def test_unknown_path_is_404() -> None:
    app, _ = make_app()
    response = await call(app, "GET", "/v1/nope")
    assert response.status == 404
    assert response.json() == {"error": "no route GET /v1/nope"}


async def test_wrong_method_is_405() -> None:
    app, seen = make_app()
    response = await call(app, "GET", "/v1/echo")
    assert response.status == 405
    assert "/v1/echo" in response.json()["error"]
    response = await call(app, "DELETE", "/v1/items")
    assert response.status == 405
    assert seen == []


async def test_http_error_keeps_its_status() -> None:
    app, _ = make_app()
    response = await call(app, "GET", "/v1/teapot")
    assert response.status == 418
    assert response.json() == {"error": "short and stout"}


async def test_unexpected_exception_is_500(caplog: pytest.LogCaptureFixture) -> None:
    app, _ = make_app()
    response = await call(app, "GET", "/v1/broken")
    assert response.status == 500
    assert "boom" in response.json()["error"]
    assert any(r.exc_info for r in caplog.records)  # logged with its traceback


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [("/v1/milvus", 503, "cannot open Milvus at http://m:19530"),
     ("/v1/malformed", 400, "record.kind: 'a b' must be ASCII letters")],
)
async def test_errors_of_other_packages_get_their_status(
    caplog: pytest.LogCaptureFixture, path: str, status: int, message: str
) -> None:
    # Handlers do not convert errors: meshnode.errors.http_status decides, in one place.
    app, _ = make_app()
    response = await call(app, "GET", path)
    assert (response.status, response.json()) == (status, {"error": message})
    assert not any(r.exc_info for r in caplog.records)  # known errors: no traceback


async def test_body_over_max_is_413(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "MAX_BODY", 100)
    app, seen = make_app()
    response = await call(app, "POST", "/v1/echo", chunks=[b" " * 60, b" " * 41])
    assert response.status == 413
    assert "100" in response.json()["error"]
    assert seen == []
    # Exactly MAX_BODY bytes is fine.
    body = b'{"k": "' + b"v" * 91 + b'"}'
    assert len(body) == 100
    response = await call(app, "POST", "/v1/echo", chunks=[body[:50], body[50:]])
    assert response.status == 200
    assert response.json()["body"] == {"k": "v" * 91}


async def test_body_over_the_real_max_is_413() -> None:
    app, _ = make_app()
    chunk = b" " * (1024 * 1024)
    response = await call(app, "POST", "/v1/echo", chunks=[chunk] * 9)
    assert response.status == 413


async def test_lifespan() -> None:
    app, _ = make_app()
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with trio.fail_after(5):
        await app({"type": "lifespan"}, receive, send)
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]


# ---- DaemonClient against a real server ---------------------------------------------------------


@asynccontextmanager
async def running_api(app: ApiApp) -> AsyncIterator[str]:
    shutdown = trio.Event()
    with trio.fail_after(15):  # a hang fails the test instead of blocking the run
        async with trio.open_nursery() as nursery:
            url: str = await nursery.start(serve_api, app, "127.0.0.1:0", shutdown)
            try:
                yield url
            finally:
                shutdown.set()


def api_home(tmp_path: Path, url: str, token: str = TOKEN) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / TOKEN_FILE).write_text(token + "\n")
    write_runtime(home, {"pid": 1, "api": url})
    return home


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_client_against_serve_api(tmp_path: Path) -> None:
    app = ApiApp(TOKEN)

    async def status(request: Request) -> dict[str, Any]:
        return {"ok": True, "args": request.query}

    async def conflict(request: Request) -> None:
        raise HttpError(409, f"already have {request.json()['name']}")

    async def add(request: Request) -> dict[str, Any]:
        return {"added": request.json()}

    app.route("GET", "/v1/status", status)
    app.route("POST", "/v1/conflict", conflict)
    app.route("POST", "/v1/add", add)

    async with running_api(app) as url:
        assert url.startswith("http://127.0.0.1:")
        assert int(url.rsplit(":", 1)[1]) > 0
        home = api_home(tmp_path, url)
        assert load_token(home) == TOKEN
        client = DaemonClient(home, timeout=5)
        try:
            got = await trio.to_thread.run_sync(lambda: client.get("/v1/status", a="1", b=None))
            assert got == {"ok": True, "args": {"a": ["1"]}}

            got = await trio.to_thread.run_sync(client.post, "/v1/add", {"n": [1, "x"]})
            assert got == {"added": {"n": [1, "x"]}}

            with pytest.raises(ApiError) as info:
                await trio.to_thread.run_sync(client.post, "/v1/conflict", {"name": "kb-1"})
            assert (info.value.status, str(info.value)) == (409, "already have kb-1")

            with pytest.raises(ApiError) as info:
                await trio.to_thread.run_sync(client.get, "/v1/missing")
            assert (info.value.status, str(info.value)) == (404, "no route GET /v1/missing")

            with pytest.raises(ApiError) as info:
                await trio.to_thread.run_sync(client.get, "/v1/conflict")
            assert info.value.status == 405
        finally:
            client.close()

        # A client with the wrong token is refused by the server.
        (home / TOKEN_FILE).write_text("not-the-token")
        wrong = DaemonClient(home, timeout=5)
        try:
            with pytest.raises(ApiError) as info:
                await trio.to_thread.run_sync(wrong.get, "/v1/status")
            assert (info.value.status, str(info.value)) == (401, "missing or wrong API token")
        finally:
            wrong.close()


async def test_serve_api_stops_on_shutdown() -> None:
    app = ApiApp(TOKEN)
    shutdown = trio.Event()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_api, app, "127.0.0.1:0", shutdown)
            shutdown.set()
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


async def test_client_slow_daemon_is_not_reported_as_not_running(tmp_path: Path) -> None:
    app = ApiApp(TOKEN)
    release = trio.Event()

    async def slow(request: Request) -> dict[str, str]:
        await release.wait()
        return {}

    app.route("GET", "/v1/slow", slow)
    async with running_api(app) as url:
        client = DaemonClient(api_home(tmp_path, url), timeout=0.3)
        try:
            with pytest.raises(MeshnodeError) as info:
                await trio.to_thread.run_sync(client.get, "/v1/slow")
        finally:
            release.set()
            client.close()
    assert not isinstance(info.value, DaemonNotRunning)
    assert "did not answer within 0.3 s" in str(info.value)


async def test_client_closed_port_is_daemon_not_running(tmp_path: Path) -> None:
    home = api_home(tmp_path, f"http://127.0.0.1:{closed_port()}")
    client = DaemonClient(home, timeout=5)
    try:
        with pytest.raises(DaemonNotRunning, match="not running"):
            await trio.to_thread.run_sync(client.get, "/v1/status")
    finally:
        client.close()


@pytest.mark.parametrize("runtime", [None, {"pid": 1}, {"api": 7700}])
def test_client_without_usable_runtime_file(tmp_path: Path, runtime: dict[str, Any] | None) -> None:
    (tmp_path / TOKEN_FILE).write_text(TOKEN)
    if runtime is not None:
        write_runtime(tmp_path, runtime)
    with pytest.raises(DaemonNotRunning) as info:
        DaemonClient(tmp_path)
    assert str(tmp_path) in str(info.value)
