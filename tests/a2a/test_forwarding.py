"""Forwarded questions: the metadata a neighbour sends, and how TaskService handles it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from meshnode.a2a.owners import Owner, peer_owner
from meshnode.a2a.tasks import AGENT_KEY, FORWARD_KEY, MAX_VISITED, TaskService, forward_params
from meshnode.errors import MeshnodeError
from protocols.a2a import A2AError, DataPart, Message, StreamEvent, TaskState, TextPart
from protocols.peerid import Signer

PEER = Signer.from_seed(bytes(32)).peer_id
SENDER = Signer.from_seed(bytes([7]) * 32).peer_id


def _message(metadata: dict[str, Any], text: str = "Where is the answer?") -> Message:
    return Message(role="user", parts=(TextPart(text),), message_id="m1", metadata=metadata)


def _service() -> TaskService:
    knowledge: Any = SimpleNamespace(signer=Signer.from_seed(bytes(range(32))))
    return TaskService(host=None, specs=(), answerer=None, knowledge=knowledge,  # type: ignore[arg-type]
                       version="test")


def test_forward_params() -> None:
    assert forward_params(_message({})) is None
    assert forward_params(_message({FORWARD_KEY: {"hops": 1, "visited": [PEER]}})) == (
        1, frozenset({PEER}))
    for bad in ({"hops": 0, "visited": []}, {"hops": True, "visited": []},
                {"hops": 1, "visited": "x"}, {"hops": 1, "visited": [1]},
                {"hops": 1, "visited": ["p"] * (MAX_VISITED + 1)}, {"visited": []}):
        with pytest.raises(A2AError):
            forward_params(_message({FORWARD_KEY: bad}))


async def test_a_forwarded_question_is_routed_on_and_answered() -> None:
    service = _service()
    calls: list[tuple[str, int, frozenset[str], float, Owner]] = []

    async def forwarder(question: str, hops: int, visited: frozenset[str],
                        deadline: float, owner: Owner) -> dict[str, Any]:
        calls.append((question, hops, visited, deadline, owner))
        return {"text": "Here [1]", "agent": "far-expert", "peer": PEER, "citations": []}

    service.forwarder = forwarder
    events: list[StreamEvent] = []

    async def emit(event: StreamEvent) -> None:
        events.append(event)

    task = await service.run_task(
        _message({FORWARD_KEY: {"hops": 2, "visited": [PEER]}}), emit, owner=peer_owner(SENDER))
    assert task.status.state == TaskState.COMPLETED
    # Routed on for its sender, and never back to it (whatever it said it visited).
    assert calls == [("Where is the answer?", 2, frozenset({PEER, SENDER}), 60.0,
                      peer_owner(SENDER))]
    data = next(p.data for p in task.artifacts[0].parts if isinstance(p, DataPart))
    assert data["agent"] == "far-expert" and task.artifacts[0].text == "Here [1]"
    assert [getattr(e, "final", False) for e in events][-1] is True


async def test_forwarding_failures_end_the_task() -> None:
    service = _service()
    sender = peer_owner(SENDER)
    rejected = await service.run_task(_message({FORWARD_KEY: {"hops": 1, "visited": []}}),
                                      owner=sender)
    assert rejected.status.state == TaskState.REJECTED  # this node does not forward

    async def failing(*_: Any) -> dict[str, Any]:
        raise MeshnodeError("hop limit 2 reached")

    service.forwarder = failing
    failed = await service.run_task(_message({FORWARD_KEY: {"hops": 1, "visited": []}}),
                                    owner=sender)
    assert failed.status.state == TaskState.FAILED
    assert failed.status.message is not None and "hop limit" in failed.status.message.text
    # A named agent wins over the forward marker: it is not forwarded, and unknown here.
    named = await service.run_task(_message({FORWARD_KEY: {"hops": 1, "visited": []},
                                             AGENT_KEY: "nobody"}), owner=sender)
    assert named.status.state == TaskState.REJECTED
