"""A2A sessions (/meshnode/a2a/1.1.0) on the in-memory mesh: many calls over one stream, a
caller that gives up cancels the work, a lost link is reopened, a peer that speaks only
1.0 is still called (a stream per call); and a session is held to a 1.0 stream's rules: only
for a peer with a verified hello, its tasks owned by that peer, each request within the
peer's A2A budgets."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import trio

from meshnode.a2a.owners import OPERATOR, peer_owner
from meshnode.a2a.session import A2AClient
from meshnode.a2a.tasks import AGENT_KEY, PeerBusy
from meshnode.config import LimitSettings
from meshnode.node.inmemory import InMemoryMesh
from protocols.a2a import (
    ListTasks,
    Message,
    StreamEvent,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatusUpdateEvent,
    TextPart,
)
from protocols.a2a.session import SESSION_PROTOCOL
from tests.a2a.test_tasks_inmemory import EXPERT, TIP, Gated
from tests.hostile import Hostile, start_hostile
from tests.inmemory import Node, connect, eventually, no_faults, start_nodes

QUESTIONS = [f"Which Milvus index gives low-latency vector search? ({i})" for i in range(20)]


def _message(text: str) -> Message:
    return Message(role="user", parts=(TextPart(text),), message_id=str(uuid.uuid4()),
                   metadata={AGENT_KEY: "milvus-expert"})


async def _pair(nursery: trio.Nursery, tmp_path: Path) -> tuple[InMemoryMesh, Node, Node]:
    mesh = InMemoryMesh()
    client, server = await start_nodes(nursery, mesh, tmp_path, [(), (EXPERT,)])
    await server.services.knowledge.add(TIP, kind="tip")
    await connect(client, server)
    return mesh, client, server


async def _ask(client: A2AClient, server: Node, text: str) -> list[StreamEvent]:
    events: list[StreamEvent] = []

    async def collect(event: StreamEvent) -> None:
        events.append(event)

    await client.call(server.id, _message(text), collect, timeout=30)
    return events


async def test_many_calls_share_one_session(nursery: trio.Nursery, tmp_path: Path) -> None:
    mesh, client, server = await _pair(nursery, tmp_path)
    a2a = client.services.client
    results: dict[str, list[StreamEvent]] = {}

    async def one(text: str) -> None:
        results[text] = await _ask(a2a, server, text)

    async with trio.open_nursery() as calls:
        for text in QUESTIONS[:8]:  # the default budget: 8 at once from one peer
            calls.start_soon(one, text)
    for text, events in results.items():
        assert isinstance(events[0], Task) and events[0].history[0].text == text
        assert isinstance(events[-1], TaskStatusUpdateEvent) and events[-1].final
        assert events[-1].status.state == TaskState.COMPLETED
        assert any(isinstance(e, TaskArtifactUpdateEvent) for e in events)
    assert len(results) == 8
    sessions = server.services.sessions
    assert (sessions.sessions, sessions.requests) == (1, 8)
    assert a2a.calls == {"session": 8, "stream": 0}
    no_faults(mesh)


async def test_a_caller_that_gives_up_cancels_the_work(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    mesh, client, server = await _pair(nursery, tmp_path)
    gate = Gated(server.services.tasks.answerer)
    server.services.tasks.answerer = gate  # type: ignore[assignment]

    async def collect(event: StreamEvent) -> None:
        pass

    with pytest.raises(trio.TooSlowError):
        await client.services.client.call(server.id, _message(QUESTIONS[0]), collect,
                                          timeout=1.0)
    await eventually(lambda: gate.cancelled, "the server's work cancelled")
    await eventually(lambda: not server.services.tasks.store.running(), "no task running")
    # The session itself is fine: the next call goes through on it.
    gate.release.set()
    events = await _ask(client.services.client, server, QUESTIONS[1])
    assert isinstance(events[-1], TaskStatusUpdateEvent) and events[-1].final
    assert server.services.sessions.sessions == 1
    no_faults(mesh)


async def test_a_lost_link_fails_the_calls_then_a_new_session_is_opened(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    mesh, client, server = await _pair(nursery, tmp_path)
    await _ask(client.services.client, server, QUESTIONS[0])
    gate = Gated(server.services.tasks.answerer)
    server.services.tasks.answerer = gate  # type: ignore[assignment]
    failed: list[BaseException] = []

    async def stuck() -> None:
        try:
            await _ask(client.services.client, server, QUESTIONS[1])
        except trio.BrokenResourceError as exc:
            failed.append(exc)

    nursery.start_soon(stuck)
    await gate.entered.wait()
    mesh.cut(client.id, server.id)
    await eventually(lambda: failed, "the call in flight failing")
    mesh.heal(client.id, server.id)
    gate.release.set()
    await connect(client, server)
    events = await _ask(client.services.client, server, QUESTIONS[2])
    assert isinstance(events[-1], TaskStatusUpdateEvent) and events[-1].final
    assert server.services.sessions.sessions == 2


async def test_a_peer_that_speaks_only_1_0_is_called_a_stream_at_a_time(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    mesh, client, server = await _pair(nursery, tmp_path)
    del server.host._handlers[SESSION_PROTOCOL]  # as a node of the version before
    a2a = client.services.client
    for text in QUESTIONS[:3]:
        events = await _ask(a2a, server, text)
        assert isinstance(events[-1], TaskStatusUpdateEvent)
        assert events[-1].status.state == TaskState.COMPLETED
    assert a2a.calls == {"session": 0, "stream": 3}
    assert server.services.sessions.sessions == 0
    no_faults(mesh)


async def _calling(nursery: trio.Nursery, mesh: InMemoryMesh) -> tuple[Hostile, A2AClient]:
    """A stranger (no services of its own) and an A2A client on its host."""
    stranger = await start_hostile(nursery, mesh, 9)
    client = A2AClient(stranger.host)
    await nursery.start(client.run)
    return stranger, client


async def test_no_session_for_a_peer_without_a_hello(nursery: trio.Nursery,
                                                     tmp_path: Path) -> None:
    mesh = InMemoryMesh()
    [server] = await start_nodes(nursery, mesh, tmp_path, [(EXPERT,)])
    stranger, client = await _calling(nursery, mesh)
    await stranger.host.connect(server.id, server.host.listen_addrs(), timeout=10)
    await eventually(lambda: stranger.peer_id in server.services.membership.gate.gossip_only,
                     "the stranger known as gossip-only")
    with pytest.raises(trio.BrokenResourceError):
        await _ask(client, server, QUESTIONS[0])
    assert server.services.tasks.store.list(ListTasks(), OPERATOR) == ()
    assert server.services.sessions.requests == 0


async def test_session_requests_are_owned_and_budgeted_like_streams(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    mesh = InMemoryMesh()
    limits = LimitSettings(streams_per_peer=2, a2a_requests_per_s=100.0)
    [server] = await start_nodes(nursery, mesh, tmp_path, [(EXPERT,)], limits=limits)
    await server.services.knowledge.add(TIP, kind="tip")
    gate = Gated(server.services.tasks.answerer)
    server.services.tasks.answerer = gate  # type: ignore[assignment]
    stranger, client = await _calling(nursery, mesh)
    await stranger.join(server.id, server.host.listen_addrs())
    done: list[list[StreamEvent]] = []

    async def one(text: str) -> None:
        done.append(await _ask(client, server, text))

    for text in QUESTIONS[:2]:
        nursery.start_soon(one, text)
    store, refused = server.services.tasks.store, server.services.limits.refused
    await eventually(lambda: store.running() == 2, "two tasks running")
    with pytest.raises(PeerBusy):  # a third at once: more than two streams' worth
        await _ask(client, server, QUESTIONS[2])
    assert refused["streams:a2a"] == 1
    gate.release.set()
    await eventually(lambda: len(done) == 2, "the two tasks done")
    owned = store.list(ListTasks(), peer_owner(stranger.peer_id))
    assert {t.id for t in owned} == {e[0].id for e in done}  # type: ignore[attr-defined]
    assert server.services.trust.graph.evidence_counts(stranger.peer_id) == {"refused": 1}


async def test_session_requests_take_the_a2a_request_rate(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    mesh = InMemoryMesh()
    limits = LimitSettings(a2a_requests_per_s=0.25)  # a burst of one
    [server] = await start_nodes(nursery, mesh, tmp_path, [(EXPERT,)], limits=limits)
    await server.services.knowledge.add(TIP, kind="tip")
    stranger, client = await _calling(nursery, mesh)
    await stranger.join(server.id, server.host.listen_addrs())
    events = await _ask(client, server, QUESTIONS[0])
    assert isinstance(events[-1], TaskStatusUpdateEvent)
    assert events[-1].status.state == TaskState.COMPLETED
    with pytest.raises(PeerBusy):  # the next one within four seconds: over the rate
        await _ask(client, server, QUESTIONS[1])
    assert server.services.limits.refused["rate:a2a"] == 1
    assert server.services.sessions.sessions == 1  # refused, not cut off


async def test_a_session_over_a_relay_moves_to_a_direct_connection(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Hole punching made a direct connection: the next call opens a new session (which
    libp2p puts on the direct connection) instead of staying on the relay."""
    mesh, client, server = await _pair(nursery, tmp_path)
    a2a = client.services.client
    kind = ["relayed"]
    a2a.connection_kind = lambda _peer: kind[0]
    await _ask(a2a, server, QUESTIONS[0])
    await _ask(a2a, server, QUESTIONS[1])
    assert server.services.sessions.sessions == 1
    kind[0] = "direct"
    events = await _ask(a2a, server, QUESTIONS[2])
    assert isinstance(events[-1], TaskStatusUpdateEvent)
    assert events[-1].status.state == TaskState.COMPLETED
    await _ask(a2a, server, QUESTIONS[3])
    assert server.services.sessions.sessions == 2  # one more, and only one
    no_faults(mesh)
