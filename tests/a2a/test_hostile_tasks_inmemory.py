"""Hostile peers against a node's tasks, on the in-memory mesh: a fresh key with a valid hello
reads no one's tasks but its own, cancels no one else's, and cannot make the node hold more
tasks, bytes or running work than its budgets allow.

The attacker is tests.hostile.Hostile: the project's own hello and A2A frames, sent by hand.
"""

from __future__ import annotations

from pathlib import Path

import trio

from meshnode.a2a.owners import BUSY, MIB, OPERATOR, peer_owner
from meshnode.a2a.tasks import AGENT_KEY
from meshnode.config import LimitSettings
from meshnode.node.inmemory import InMemoryMesh
from meshnode.trust.graph import Outcome
from protocols.a2a import (
    TASK_NOT_FOUND,
    CancelTask,
    ErrorReply,
    GetTask,
    ListTasks,
    Result,
    SendMessage,
    Task,
    TaskState,
)
from tests.a2a.test_tasks_inmemory import EXPERT, TIP, Gated
from tests.hostile import Hostile, question, start_hostile
from tests.inmemory import Node, connect, eventually, no_faults, start_nodes

#: What the operator of the asking node asks: it must never reach the attacker.
SECRET = "Which Milvus index fits the confidential-project-7 search?"


async def _asker_and_expert(nursery: trio.Nursery, tmp_path: Path,
                            mesh: InMemoryMesh) -> tuple[Node, Node]:
    asker, expert = await start_nodes(nursery, mesh, tmp_path, [(), (EXPERT,)])
    await expert.services.knowledge.add(TIP, kind="tip")
    await connect(asker, expert)
    await eventually(lambda: len(asker.services.asker.known_agents()) == 1, "the expert's card")
    return asker, expert


def _leaks(reply: Result | ErrorReply | None) -> bool:
    return reply is not None and "confidential-project-7" in repr(reply)


async def test_a_peer_reads_no_one_elses_tasks(nursery: trio.Nursery, tmp_path: Path) -> None:
    mesh = InMemoryMesh()
    asker, expert = await _asker_and_expert(nursery, tmp_path, mesh)
    asked = await asker.services.mesh.run_question(question(SECRET))
    assert asked.status.state == TaskState.COMPLETED  # the operator's ask, kept on the asker
    [agent_task] = expert.services.tasks.store.list(ListTasks(), OPERATOR)  # the expert's

    attacker = await start_hostile(nursery, mesh, 9)
    for victim, task in ((asker, asked), (expert, agent_task)):
        await attacker.join(victim.id, victim.host.listen_addrs())
        listing = await attacker.request(victim.id, ListTasks())
        assert isinstance(listing, Result) and listing.value == (), listing
        for op in (GetTask(task.id), CancelTask(task.id)):
            reply = await attacker.request(victim.id, op)
            assert isinstance(reply, ErrorReply) and reply.code == TASK_NOT_FOUND, reply
            assert not _leaks(reply)

    # Its own tasks it does see, and only those.
    own = await attacker.request(expert.id, SendMessage(question("hi", **{AGENT_KEY: "x"})))
    assert isinstance(own, Result) and isinstance(own.value, Task)
    listing = await attacker.request(expert.id, ListTasks())
    assert isinstance(listing, Result) and isinstance(listing.value, tuple)
    assert [t.id for t in listing.value] == [own.value.id]
    # The operator sees every task.
    listed = expert.services.tasks.store.list(ListTasks(), OPERATOR)
    assert {t.id for t in listed} == {own.value.id, agent_task.id}
    no_faults(mesh)


async def test_a_peer_cannot_cancel_the_operators_ask(nursery: trio.Nursery,
                                                      tmp_path: Path) -> None:
    mesh = InMemoryMesh()
    asker, expert = await _asker_and_expert(nursery, tmp_path, mesh)
    gate = Gated(expert.services.tasks.answerer)
    expert.services.tasks.answerer = gate  # type: ignore[assignment]
    done: list[Task] = []

    async def ask() -> None:
        done.append(await asker.services.mesh.run_question(question(SECRET)))

    nursery.start_soon(ask)
    await gate.entered.wait()
    attacker = await start_hostile(nursery, mesh, 9)
    running = [(node, t.id) for node in (asker, expert)
               for t in node.services.tasks.store.list(ListTasks(), OPERATOR)]
    assert len(running) == 2
    for node, task_id in running:
        await attacker.join(node.id, node.host.listen_addrs())
        reply = await attacker.request(node.id, CancelTask(task_id))
        assert isinstance(reply, ErrorReply) and reply.code == TASK_NOT_FOUND, reply
    gate.release.set()
    await eventually(lambda: done, "the operator's ask to finish")
    assert done[0].status.state == TaskState.COMPLETED and not gate.cancelled
    no_faults(mesh)


def _owned(node: Node, peer: str) -> list[Task]:
    """The tasks ``peer`` holds on ``node``, as the operator sees them."""
    store = node.services.tasks.store
    return list(store.list(ListTasks(page_size=100), peer_owner(peer)))


async def _flood(attacker: Hostile, victim: Node, count: int, size: int) -> None:
    """``count`` tasks of ``size`` bytes each, ended at once (no such agent: rejected)."""
    for i in range(count):
        text = f"{i} " + "x" * size
        reply = await attacker.request(victim.id, SendMessage(question(text, **{AGENT_KEY: "x"})))
        assert reply is not None


async def test_a_peer_cannot_fill_the_task_store(nursery: trio.Nursery, tmp_path: Path) -> None:
    mesh = InMemoryMesh()
    limits = LimitSettings(tasks_kept_per_peer=5, task_mib_per_peer=1.0)
    asker, expert = await start_nodes(nursery, mesh, tmp_path, [(), (EXPERT,)], limits=limits)
    await expert.services.knowledge.add(TIP, kind="tip")
    await connect(asker, expert)
    await eventually(lambda: asker.services.asker.known_agents(), "the expert's card")
    honest = await asker.services.mesh.run_question(question("Which Milvus index is fast?"))
    assert honest.status.state == TaskState.COMPLETED
    [kept] = _owned(expert, asker.id)

    attacker = await start_hostile(nursery, mesh, 9)
    await attacker.join(expert.id, expert.host.listen_addrs())
    await _flood(attacker, expert, 12, 300 * 1024)  # 3.6 MB of history if all were kept
    store = expert.services.tasks.store
    held = store.quota.held(peer_owner(attacker.peer_id))
    assert len(_owned(expert, attacker.peer_id)) == held.finished == 3  # 3 x 300 KB <= 1 MiB
    assert held.bytes <= MIB
    await _flood(attacker, expert, 8, 10)  # small ones: the count limit holds too
    assert len(_owned(expert, attacker.peer_id)) == 5
    assert [t.id for t in _owned(expert, asker.id)] == [kept.id]  # the honest peer's stays
    no_faults(mesh)


async def test_a_full_store_drops_the_strangers_tasks_first(nursery: trio.Nursery,
                                                            tmp_path: Path) -> None:
    mesh = InMemoryMesh()
    limits = LimitSettings(task_mib=1.0, task_mib_per_peer=0.6)
    [victim] = await start_nodes(nursery, mesh, tmp_path, [(EXPERT,)], limits=limits)
    regular, *sybils = [await start_hostile(nursery, mesh, i) for i in (8, 10, 11, 12)]
    for _ in range(3):  # this node's own good record with it
        victim.services.trust.graph.record(regular.peer_id, Outcome.ACCEPTED, now=mesh.clock())
    for peer in (regular, *sybils):
        await peer.join(victim.id, victim.host.listen_addrs())
    await _flood(regular, victim, 2, 100 * 1024)
    for sybil in sybils:
        await _flood(sybil, victim, 3, 150 * 1024)  # 1.55 MB in all: over the 1 MiB total
    store = victim.services.tasks.store
    assert store.quota.bytes <= MIB
    assert len(_owned(victim, regular.peer_id)) == 2  # the peer with a good record keeps all
    assert sum(len(_owned(victim, s.peer_id)) for s in sybils) < 9
    no_faults(mesh)


async def test_running_tasks_are_budgeted_per_peer_and_for_strangers(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    mesh = InMemoryMesh()
    limits = LimitSettings(tasks_running_per_peer=2, tasks_running=4)
    [victim] = await start_nodes(nursery, mesh, tmp_path, [(EXPERT,)], limits=limits)
    gate = Gated(victim.services.tasks.answerer)
    victim.services.tasks.answerer = gate  # type: ignore[assignment]
    regular, attacker, sybil = [await start_hostile(nursery, mesh, i) for i in (8, 9, 10)]
    victim.services.trust.graph.record(regular.peer_id, Outcome.ACCEPTED, now=mesh.clock())
    for peer in (regular, attacker, sybil):
        await peer.join(victim.id, victim.host.listen_addrs())
    ask = question(TIP, **{AGENT_KEY: "milvus-expert"})
    results: list[object] = []

    async def run(peer: Hostile) -> None:
        results.append(await peer.stream_task(victim.id, ask))

    for _ in range(2):
        nursery.start_soon(run, attacker)
    await eventually(lambda: victim.services.tasks.store.running() == 2, "two tasks running")
    store, limits_ = victim.services.tasks.store, victim.services.limits
    over = await attacker.stream_task(victim.id, ask, timeout=5)  # its third
    assert isinstance(over, ErrorReply) and over.code == BUSY, over
    strange = await sybil.stream_task(victim.id, ask, timeout=5)  # strangers hold their half
    assert isinstance(strange, ErrorReply) and strange.code == BUSY, strange
    nursery.start_soon(run, regular)  # a peer with a good record still gets in
    await eventually(lambda: store.running() == 3, "the regular's task running")
    assert limits_.refused["tasks_running_per_peer"] == 1
    assert limits_.refused["tasks_running_strangers"] == 1
    graph = victim.services.trust.graph
    assert graph.evidence_counts(attacker.peer_id) == {"refused": 1}
    assert graph.evidence_counts(sybil.peer_id) == {"refused": 1}
    gate.release.set()
    await eventually(lambda: len(results) == 3, "the admitted tasks to finish")
    assert all(isinstance(r, list) and r[-1].status.state == TaskState.COMPLETED  # type: ignore[union-attr]
               for r in results)
    no_faults(mesh)


async def test_a_listing_too_big_for_one_frame_is_cut_not_failed(nursery: trio.Nursery,
                                                                 tmp_path: Path) -> None:
    mesh = InMemoryMesh()
    [victim] = await start_nodes(nursery, mesh, tmp_path, [(EXPERT,)])
    peer = await start_hostile(nursery, mesh, 9)
    await peer.join(victim.id, victim.host.listen_addrs())
    await _flood(peer, victim, 5, 400 * 1024)  # its own: 2 MB, over one 1 MiB frame
    listing = await peer.request(victim.id, ListTasks())
    assert isinstance(listing, Result) and isinstance(listing.value, tuple)
    assert 1 <= len(listing.value) < 5  # the newest that fit
    assert listing.value[0].history[0].text.startswith("4 ")
    no_faults(mesh)
