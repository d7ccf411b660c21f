"""Anonymous clients of the public A2A endpoint: each sees and cancels its own tasks only,
their questions make no trust evidence, and each has a budget of running tasks."""

from __future__ import annotations

import trio

from meshnode.a2a.owners import BUSY, OPERATOR, client_owner
from meshnode.config import LimitSettings
from meshnode.node.limits import PeerLimits
from protocols.a2a import A2AError, GetTask, ListTasks, SendMessage, TaskState
from tests.ask.test_ask_faults import Embedder, _node, _question
from tests.inmemory import eventually


async def test_anonymous_clients_see_only_their_own_tasks() -> None:
    asker, mesh, _, _ = _node(Embedder())
    alice, mallory = (mesh.handler(client_owner(a)) for a in ("10.0.0.1", "10.0.0.2"))
    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        task = await alice.send_message(SendMessage(_question()))
        assert task.status.state == TaskState.COMPLETED
        assert await mallory.list_tasks(ListTasks()) == ()
        try:
            await mallory.get_task(GetTask(task.id))
        except A2AError as exc:
            assert "no task" in exc.message
        else:
            raise AssertionError("another client read the task")
        # Hers: the question, and the task of the node's own agent that worked on it for her.
        own = await alice.list_tasks(ListTasks())
        assert task.id in {t.id for t in own} and len(own) == 2
        assert {t.history[0].text for t in own} == {task.history[0].text}
        assert task.id in {t.id for t in await mesh.handler(OPERATOR).list_tasks(ListTasks())}
        # The answer this node took for a client is nobody's evidence (it chose the question).
        assert not asker.answered and asker.trust.evidence_totals() == {}
        nursery.cancel_scope.cancel()


async def test_an_anonymous_client_has_a_budget_of_running_tasks() -> None:
    asker, mesh, _, _ = _node(Embedder())
    mesh.store.quota.limits = PeerLimits(LimitSettings(tasks_running_per_peer=1))
    client = mesh.handler(client_owner("10.0.0.9"))
    release = trio.Event()
    real_ask = asker.ask

    async def slow_ask(*args: object, **kwargs: object) -> object:
        if kwargs.get("owner") != OPERATOR:  # the client's questions take their time
            await release.wait()
        return await real_ask(*args, **kwargs)  # type: ignore[arg-type]

    asker.ask = slow_ask  # type: ignore[method-assign,assignment]
    async with trio.open_nursery() as nursery:
        await nursery.start(mesh.run)
        nursery.start_soon(client.send_message, SendMessage(_question()))
        await eventually(lambda: mesh.store.running() == 1, "the client's task running")
        try:
            with trio.fail_after(5):
                await client.send_message(SendMessage(_question()))
        except A2AError as exc:
            assert exc.code == BUSY
        else:
            raise AssertionError("a second task ran past the budget")
        # The operator is never refused, whatever clients hold.
        done = await mesh.handler(OPERATOR).send_message(SendMessage(_question()))
        assert done.status.state == TaskState.COMPLETED
        assert mesh.store.quota.limits.refused == {"tasks_running_per_peer": 1}
        release.set()
        nursery.cancel_scope.cancel()
