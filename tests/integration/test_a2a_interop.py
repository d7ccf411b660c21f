"""A standard A2A client (a2a-sdk) asks the mesh through a running node."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types import Message, Part, Role, SendMessageRequest, TaskState
from google.protobuf.json_format import MessageToDict

from meshnode.node.home import load_token, read_runtime
from tests.integration.harness import Daemon, cli_json, mesh, wait_for
from tests.integration.test_agents_mesh import _expert, _seed

pytestmark = pytest.mark.integration
QUESTION = "How do I make Milvus Lite searches fast after a bulk insert?"


async def _ask(url: str, token: str, *, streaming: bool) -> tuple[Any, list[Any]]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(headers=headers, timeout=60) as http:
        card = await A2ACardResolver(http, url).get_agent_card()
        client = ClientFactory(ClientConfig(httpx_client=http, streaming=streaming)).create(card)
        message = Message(role=Role.ROLE_USER, message_id=f"q-{streaming}",
                          parts=[Part(text=QUESTION)])
        events = [e async for e in client.send_message(SendMessageRequest(message=message))]
        return card, events


def test_a2a_sdk_client_gets_the_routed_answer(tmp_path: Path) -> None:
    with mesh(tmp_path) as nodes:
        asker = Daemon(tmp_path, "asker", "dev-support").start()
        milvus = _expert(tmp_path, "milvus-expert").start(asker.addr)
        nodes += [asker, milvus]
        _seed(milvus, "milvus")
        wait_for("the asker to know the expert",
                 lambda: len(cli_json(asker.home, "agents")) == 1, timeout=30)
        runtime = read_runtime(asker.home)
        assert runtime is not None
        url, token = runtime["api"], load_token(asker.home)

        card, events = asyncio.run(_ask(url, token, streaming=False))
        assert card.capabilities.streaming and any(s.id for s in card.skills)
        task = events[-1].task
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        answer = task.artifacts[0].parts[0].text
        assert "[1]" in answer and "flush" in answer.lower()
        routed = MessageToDict(task.artifacts[0].parts[1].data)
        assert routed["agent"] == "milvus-expert" and routed["peer"] == milvus.peer_id

        _, streamed = asyncio.run(_ask(url, token, streaming=True))
        kinds = [e.WhichOneof("payload") for e in streamed]
        assert kinds[0] == "task" and "artifact_update" in kinds
        states = [e.status_update.status.state for e in streamed
                  if e.WhichOneof("payload") == "status_update"]
        assert TaskState.TASK_STATE_WORKING in states
        assert states[-1] == TaskState.TASK_STATE_COMPLETED

        # Without the token the card (public discovery) is served, saying how to
        # authenticate, but JSON-RPC is refused.
        response = httpx.get(url + "/.well-known/agent-card.json", timeout=10)
        assert response.status_code == 200 and "bearer" in response.json()["securitySchemes"]
        response = httpx.post(url + "/a2a", json={"jsonrpc": "2.0", "id": 1,
                                                  "method": "GetTask", "params": {"id": "x"}},
                              timeout=10)
        assert response.status_code == 401
