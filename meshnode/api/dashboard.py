"""The live dashboard: a page served by the local API, fed by Server-Sent Events.

The page and its script and style (meshnode/data/dashboard, no build step, nothing from
other origins) are public: they hold no data. Everything they show comes from routes that
need the API token, which the page sends as ``Authorization: Bearer``:

- ``GET /v1/dashboard/events``: an SSE stream of ``snapshot`` events (peers and
  connections, agents, trust, memory, recent asks with their routing, latency per stage),
  sent when the view changed, at most every ``interval`` seconds;
- the existing JSON routes for the search box (``/v1/memory/search``) and the ask box
  (``POST /v1/ask``, an NDJSON stream of progress and the cited answer).

Logging in: ``meshnode dashboard`` asks the daemon (with the token) for a one-time login
code and prints ``<api>/dashboard#code=<code>``. The code is in the URL fragment, which
browsers send neither to the server (so it is in no access log) nor in a Referer; the page
exchanges it once at ``POST /dashboard/login`` for the token, keeps the token in
``sessionStorage`` (this tab only) and removes the fragment from the address bar. A code
works once and expires after LOGIN_CODE_TTL_S, so a URL left in a shell history, a
screenshot or a process list is useless.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.resources import files
from typing import Any

import numpy as np
import trio

from meshnode.a2a.tasks import TaskService
from meshnode.api.app import ApiApp, HttpError, Request, StreamingResponse
from meshnode.api.responses import body_response
from meshnode.api.routes import agents_json
from meshnode.ask.asker import Asker
from meshnode.ask.history import STAGES
from meshnode.node.membership import Membership
from meshnode.trust.service import TrustService

LOGIN_CODE_TTL_S = 300.0
MAX_LOGIN_CODES = 16
#: knowledge.stats() scans every record's author (it grows with the records): at most this
#: often and at most 5% of the time, whatever the number of viewers.
MEMORY_STATS_S = 10.0
MEMORY_STATS_SHARE = 0.05
#: Snapshots are shared by every open dashboard for this long.
SNAPSHOT_REUSE_S = 0.5
MIN_INTERVAL_S, MAX_INTERVAL_S = 0.5, 60.0
SHOWN_ASKS = 20
SHOWN_TRUST = 50
SSE_HEARTBEAT = b": keep-alive\n\n"
_ASSETS = {
    "/dashboard": ("index.html", "text/html; charset=utf-8"),
    "/dashboard/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/dashboard/app.css": ("app.css", "text/css; charset=utf-8"),
}
#: The page loads only its own script and style and talks only to this server; it may not
#: be framed, and it sends no Referer anywhere.
_PAGE_HEADERS = (
    ("content-security-policy", "default-src 'none'; script-src 'self'; style-src 'self'; "
     "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
     "frame-ancestors 'none'"),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
)
Stats = Callable[[], Awaitable[dict[str, Any]]]


def _asset(name: str) -> bytes:
    return files("meshnode").joinpath("data", "dashboard", name).read_bytes()


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None}
    p50, p95 = np.percentile(np.asarray(values), [50, 95])
    return {"p50": round(float(p50), 4), "p95": round(float(p95), 4)}


class Dashboard:
    """The dashboard's state: pending login codes and the shared, cached snapshot."""

    def __init__(
        self,
        token: str,
        *,
        membership: Membership,
        asker: Asker,
        trust: TrustService,
        tasks: TaskService,
        memory_stats: Stats,
    ) -> None:
        self._token = token
        self.membership = membership
        self.asker = asker
        self.trust = trust
        self.tasks = tasks
        self._memory_stats = memory_stats
        self._codes: dict[str, float] = {}
        self._memory: dict[str, Any] = {}
        self._memory_at = -1.0
        self._snapshot: dict[str, Any] = {}
        self._snapshot_at = -SNAPSHOT_REUSE_S
        self._lock = trio.Lock()

    # ---- login ---------------------------------------------------------------------

    def new_login_code(self) -> str:
        now = time.monotonic()
        self._codes = {c: t for c, t in self._codes.items() if t > now}
        while len(self._codes) >= MAX_LOGIN_CODES:
            del self._codes[min(self._codes, key=self._codes.__getitem__)]
        code = secrets.token_urlsafe(32)
        self._codes[code] = now + LOGIN_CODE_TTL_S
        return code

    def redeem(self, code: str) -> str | None:
        """The API token for a valid, unused login code (which is then spent)."""
        expires = self._codes.pop(code, None)
        return self._token if expires is not None and expires > time.monotonic() else None

    # ---- the view ------------------------------------------------------------------

    async def snapshot(self) -> dict[str, Any]:
        async with self._lock:
            now = trio.current_time()
            if now >= self._memory_at:
                self._memory = await self._memory_stats()
                took = trio.current_time() - now
                self._memory_at = now + max(MEMORY_STATS_S, took / MEMORY_STATS_SHARE)
                now = trio.current_time()
            if now - self._snapshot_at >= SNAPSHOT_REUSE_S:
                self._snapshot = self._build()
                self._snapshot_at = now
            return self._snapshot

    def _build(self) -> dict[str, Any]:
        records = self.asker.history.recent()
        stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
        for record in records:
            if record.ok:
                for stage, seconds in record.stage_seconds().items():
                    stages[stage].append(seconds)
        states = {str(state): n for state, n in self.tasks.store.by_state().items()}
        trust = self.trust.snapshot()
        trust["peers"] = trust["peers"][:SHOWN_TRUST]
        return {
            "self": self.membership.signer.peer_id,
            "peers": [_peer_view(p) for p in self.membership.peers_json()],
            "agents": agents_json(self.asker),
            "trust": trust,
            "memory": self._memory,
            "asks": [r.to_json() for r in records[:SHOWN_ASKS]],
            "latency": {stage: _percentiles(v) for stage, v in stages.items()},
            "tasks": {"by_state": states, "running": self.tasks.store.running()},
        }

    async def events(self, interval: float) -> AsyncIterator[bytes]:
        last = b""
        while True:
            body = json.dumps(await self.snapshot(), default=str, sort_keys=True).encode()
            if body != last:
                yield b"event: snapshot\ndata: " + body + b"\n\n"
                last = body
            await trio.sleep(interval)


def _peer_view(peer: dict[str, Any]) -> dict[str, Any]:
    """A peer as the page shows it: its agents by name only (cards are in "agents")."""
    agents = [a.get("name") for a in peer.get("agents", []) if isinstance(a, dict)]
    return {**peer, "addrs": peer.get("addrs", [])[:4],
            "agents": [a for a in agents if isinstance(a, str)]}


def add_dashboard_routes(app: ApiApp, dashboard: Dashboard) -> None:
    async def asset(request: Request) -> StreamingResponse:
        name, content_type = _ASSETS[request.path]
        return body_response(content_type, _asset(name), _PAGE_HEADERS)

    async def login_code(_: Request) -> dict[str, Any]:
        return {"code": dashboard.new_login_code(), "expires_s": LOGIN_CODE_TTL_S}

    async def login(request: Request) -> dict[str, str]:
        code = request.json().get("code")
        token = dashboard.redeem(code) if isinstance(code, str) else None
        if token is None:
            raise HttpError(401, "this login link is used or expired: run `meshnode dashboard`")
        return {"token": token}

    async def events(request: Request) -> StreamingResponse:
        try:
            interval = float(request.arg("interval") or 2.0)
        except ValueError:
            raise HttpError(400, "interval must be a number of seconds") from None
        interval = min(max(interval, MIN_INTERVAL_S), MAX_INTERVAL_S)
        return StreamingResponse(
            "text/event-stream", dashboard.events(interval),
            headers=(("x-accel-buffering", "no"),),
            heartbeat=SSE_HEARTBEAT, heartbeat_s=15.0,
        )

    for path in _ASSETS:
        app.route("GET", path, asset, public=True)
    app.route("POST", "/dashboard/login", login, public=True)
    app.route("POST", "/v1/dashboard/login-code", login_code)
    app.route("GET", "/v1/dashboard/events", events)
