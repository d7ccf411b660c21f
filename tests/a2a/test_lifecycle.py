"""TaskStore and TaskRun: one task lifecycle, its store, cancel, and fault containment."""

from __future__ import annotations

import logging

import pytest
import trio

from meshnode.a2a.lifecycle import TaskRun, TaskStore
from meshnode.a2a.owners import OPERATOR
from protocols.a2a import (
    TASK_NOT_CANCELABLE,
    TASK_NOT_FOUND,
    A2AError,
    Artifact,
    ListTasks,
    Message,
    StreamEvent,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatusUpdateEvent,
    TextPart,
)


def _message(text: str = "What is HNSW?", context: str | None = None) -> Message:
    return Message(role="user", parts=(TextPart(text),), message_id="m1", context_id=context)


class Listener:
    def __init__(self, fail_after: int | None = None) -> None:
        self.events: list[StreamEvent] = []
        self._fail_after = fail_after

    async def __call__(self, event: StreamEvent) -> None:
        if self._fail_after is not None and len(self.events) >= self._fail_after:
            raise trio.BrokenResourceError("the asker closed the stream")
        self.events.append(event)

    def states(self) -> list[str]:
        out = []
        for e in self.events:
            if isinstance(e, Task):
                out.append(str(e.status.state))
            elif isinstance(e, TaskStatusUpdateEvent):
                out.append(str(e.status.state) + (" final" if e.final else ""))
            elif isinstance(e, TaskArtifactUpdateEvent):
                out.append("artifact")
        return out


ANSWER = Artifact(artifact_id="a1", name="answer", parts=(TextPart("HNSW is a graph index."),))


async def test_a_task_goes_submitted_working_artifact_completed() -> None:
    store, listener = TaskStore(), Listener()
    async with store.run(_message(context="c1"), listener, owner=OPERATOR) as run:
        assert store.get(run.task.id, OPERATOR).status.state == TaskState.SUBMITTED
        await run.working()
        await run.working("asking milvus-expert", {"stage": "asking"})
        await run.complete(ANSWER)
    assert listener.states() == ["submitted", "working", "working", "artifact",
                                 "completed final"]
    progress = listener.events[2]
    assert isinstance(progress, TaskStatusUpdateEvent)
    assert progress.metadata == {"stage": "asking"}
    assert progress.status.message is not None
    assert progress.status.message.text == "asking milvus-expert"
    task = store.get(run.task.id, OPERATOR)
    assert task == run.task and task.status.state == TaskState.COMPLETED
    assert task.artifacts == (ANSWER,) and task.context_id == "c1"
    assert store.running() == 0 and store.faults.counts() == {}


async def test_fail_and_reject_carry_their_reason() -> None:
    store = TaskStore()
    async with store.run(_message(), owner=OPERATOR) as failed:
        await failed.working()
        await failed.fail("the LLM is rate limiting us")
    async with store.run(_message(""), owner=OPERATOR) as rejected:
        await rejected.reject("the message has no text")
    for run, state, reason in ((failed, TaskState.FAILED, "rate limiting"),
                               (rejected, TaskState.REJECTED, "no text")):
        status = store.get(run.task.id, OPERATOR).status
        assert status.state == state
        assert status.message is not None and reason in status.message.text


async def test_an_exception_in_the_work_fails_only_that_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, listener = TaskStore(), Listener()
    with caplog.at_level(logging.ERROR):
        async with store.run(_message(), listener, where="mesh ask", owner=OPERATOR) as run:
            await run.working()
            raise KeyError("a bug met by a strange input")
    task = store.get(run.task.id, OPERATOR)
    assert task.status.state == TaskState.FAILED
    assert task.status.message is not None and "internal error" in task.status.message.text
    assert listener.states()[-1] == "failed final"
    assert store.faults.counts() == {"mesh ask": 1}
    assert any(r.exc_info and r.levelno == logging.ERROR for r in caplog.records)
    # The store goes on serving.
    async with store.run(_message(), owner=OPERATOR) as ok:
        await ok.working()
        await ok.complete(ANSWER)
    assert store.get(ok.task.id, OPERATOR).status.state == TaskState.COMPLETED


async def test_work_that_ends_without_a_final_state_fails() -> None:
    store = TaskStore()
    async with store.run(_message(), where="a2a task", owner=OPERATOR) as run:
        await run.working()
    assert store.get(run.task.id, OPERATOR).status.state == TaskState.FAILED
    assert store.faults.counts() == {"a2a task": 1}


async def test_cancel_task_stops_the_work_and_tells_the_listener() -> None:
    store, listener = TaskStore(), Listener()
    started = trio.Event()
    reached_the_end = False
    runs: list[TaskRun] = []

    async def work() -> None:
        nonlocal reached_the_end
        async with store.run(_message(), listener, owner=OPERATOR) as run:
            runs.append(run)
            await run.working()
            started.set()
            await trio.sleep_forever()
            reached_the_end = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(work)
        await started.wait()
        assert store.running() == 1
        canceled = store.cancel(runs[0].task.id, OPERATOR)
        assert canceled.status.state == TaskState.CANCELED
    assert not reached_the_end
    assert listener.states() == ["submitted", "working", "canceled final"]
    assert store.get(runs[0].task.id, OPERATOR).status.state == TaskState.CANCELED
    assert store.running() == 0 and store.faults.counts() == {}
    with pytest.raises(A2AError) as again:
        store.cancel(runs[0].task.id, OPERATOR)
    assert again.value.code == TASK_NOT_CANCELABLE
    with pytest.raises(A2AError) as unknown:
        store.cancel("no-such-task", OPERATOR)
    assert unknown.value.code == TASK_NOT_FOUND


async def test_a_late_progress_report_does_not_undo_a_cancel() -> None:
    store, listener = TaskStore(), Listener()
    async with store.run(_message(), listener, owner=OPERATOR) as run:
        await run.working()
        store.cancel(run.task.id, OPERATOR)
        with trio.CancelScope(shield=True):  # the report races the cancel
            await run.working("asking python-expert")
        await trio.lowlevel.checkpoint()  # the cancel lands here
    assert store.get(run.task.id, OPERATOR).status.state == TaskState.CANCELED
    assert listener.states() == ["submitted", "working", "canceled final"]


async def test_a_cancellation_from_outside_passes_through_and_is_recorded() -> None:
    store = TaskStore()
    runs: list[TaskRun] = []
    with trio.move_on_after(0.05) as deadline:
        async with store.run(_message(), owner=OPERATOR) as run:
            runs.append(run)
            await run.working()
            await trio.sleep_forever()
    assert deadline.cancelled_caught  # not swallowed by the run
    task = store.get(runs[0].task.id, OPERATOR)
    assert task.status.state == TaskState.CANCELED
    assert task.status.message is not None and "stopped" in task.status.message.text
    assert store.faults.counts() == {}


async def test_a_listener_that_goes_away_stops_the_work() -> None:
    store, listener = TaskStore(), Listener(fail_after=2)
    reached_the_end = False
    async with store.run(_message(), listener, owner=OPERATOR) as run:
        await run.working()
        await run.working("still thinking")  # the listener is gone by now
        await trio.sleep_forever()
        reached_the_end = True
    assert not reached_the_end
    task = store.get(run.task.id, OPERATOR)
    assert task.status.state == TaskState.CANCELED
    assert task.status.message is not None and "went away" in task.status.message.text
    assert store.faults.counts() == {}


async def test_the_store_keeps_the_newest_finished_tasks_and_every_running_one() -> None:
    store = TaskStore(limit=3)
    oldest_started = trio.Event()
    release = trio.Event()
    oldest: list[str] = []

    async def long_task() -> None:
        async with store.run(_message("long"), owner=OPERATOR) as run:
            oldest.append(run.task.id)
            await run.working()
            oldest_started.set()
            await release.wait()
            await run.complete(ANSWER)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(long_task)
        await oldest_started.wait()
        finished = []
        for i in range(5):
            async with store.run(_message(f"q{i}"), owner=OPERATOR) as run:
                await run.reject("no")
            finished.append(run.task.id)
        # The running task is the oldest, and stays; the finished ones beyond the limit go.
        assert len(store) == 3
        assert store.get(oldest[0], OPERATOR).status.state == TaskState.WORKING
        listed = [t.id for t in store.list(ListTasks(), OPERATOR)]
        assert listed == [finished[4], finished[3], oldest[0]]
        with pytest.raises(A2AError):
            store.get(finished[0], OPERATOR)
        release.set()
    assert store.get(oldest[0], OPERATOR).status.state == TaskState.COMPLETED


async def test_list_filters_by_context_and_state() -> None:
    store = TaskStore()
    async with store.run(_message(context="a"), owner=OPERATOR) as one:
        await one.reject("no")
    async with store.run(_message(context="b"), owner=OPERATOR) as two:
        await two.working()
        await two.complete(ANSWER)
    assert [t.id for t in store.list(ListTasks(context_id="a"), OPERATOR)] == [one.task.id]
    completed = store.list(ListTasks(state=TaskState.COMPLETED), OPERATOR)
    assert [t.id for t in completed] == [two.task.id]
    assert [t.id for t in store.list(ListTasks(page_size=1), OPERATOR)] == [two.task.id]
