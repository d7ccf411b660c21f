"""A real A2A server built on a2a-sdk (Starlette routes, served by hypercorn on asyncio).

Run as a script, it prints ``PORT <n>`` once it listens on 127.0.0.1 and serves until
killed. Its one agent, "currency-agent", answers by the words of the question:

- ``hang`` -- never answers (a deadline test);
- ``fail`` -- raises in the executor (a2a-sdk fails the task);
- anything else -- a working status, then the answer as two artifact chunks, then
  completed. The answer restates the question: ``Converted: <question> = 42 EUR``.

``--dialect 0.3`` makes the card declare only an A2A v0.3 JSON-RPC interface (the server,
with a2a-sdk's v0.3 compatibility on, speaks both); ``--token T`` requires
``Authorization: Bearer T`` on JSON-RPC (the card stays public, as A2A wants).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import select
import socket
import subprocess
import sys
from collections.abc import Iterator

from a2a.helpers.proto_helpers import new_task_from_user_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Part,
)
from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

RPC_PATH = "/rpc"


class CurrencyExecutor(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        question = context.get_user_input()
        task = context.current_task
        if task is None:
            assert context.message is not None
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work(updater.new_agent_message([Part(text="looking up rates")]))
        if "hang" in question:
            await asyncio.sleep(3600)
        if "fail" in question:
            raise RuntimeError("the rates service is down")
        await updater.add_artifact([Part(text=f"Converted: {question} ")], artifact_id="a1",
                                   name="conversion", last_chunk=False)
        await updater.add_artifact([Part(text="= 42 EUR")], artifact_id="a1",
                                   name="conversion", append=True, last_chunk=True)
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        updater = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
        await updater.cancel()


def card(url: str, dialect: str) -> AgentCard:
    return AgentCard(
        name="Currency Agent",
        description="Converts amounts between currencies at today's exchange rates.",
        version="1.0.0",
        supported_interfaces=[AgentInterface(url=url, protocol_binding="JSONRPC",
                                             protocol_version=dialect)],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(
            id="convert", name="Currency conversion",
            description="Convert an amount of money from one currency to another: dollars, "
            "euros, yen, pounds, exchange rates.",
            tags=["currency", "exchange rate", "dollars", "euros", "convert money"],
            examples=["How much is 100 USD in EUR?"],
        )],
    )


class BearerOnRpc(BaseHTTPMiddleware):
    def __init__(self, app: object, token: str) -> None:
        super().__init__(app)  # type: ignore[arg-type]
        self.token = token

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if request.url.path == RPC_PATH and (
            request.headers.get("authorization") != f"Bearer {self.token}"
        ):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return await call_next(request)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dialect", choices=["1.0", "0.3"], default="1.0")
    parser.add_argument("--token", default="")
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    agent_card = card(f"http://127.0.0.1:{port}{RPC_PATH}", args.dialect)
    handler = DefaultRequestHandler(agent_executor=CurrencyExecutor(),
                                    task_store=InMemoryTaskStore(), agent_card=agent_card)
    routes = [*create_agent_card_routes(agent_card),
              *create_jsonrpc_routes(handler, RPC_PATH, enable_v0_3_compat=True)]
    app = Starlette(routes=routes)
    if args.token:
        app.add_middleware(BearerOnRpc, token=args.token)
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.accesslog = None
    config.errorlog = "-"
    print(f"PORT {port}", flush=True)
    await serve(app, config)  # type: ignore[arg-type]


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)


@contextlib.contextmanager
def running(dialect: str = "1.0", token: str = "", timeout: float = 60.0) -> Iterator[str]:
    """Run the server in a subprocess; yields its base URL, kills it afterwards."""
    args = [sys.executable, __file__, "--dialect", dialect] + (["--token", token] if token else [])
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        ready = select.select([proc.stdout], [], [], timeout)[0]
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"the a2a-sdk server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.kill()
        proc.wait()
