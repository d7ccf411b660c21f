"""The lifecycle of an A2A task, and the store of this node's tasks.

Both kinds of task a node runs, an agent answering on /meshnode/a2a/1.0.0 (TaskService) and
a question routed through the mesh (MeshA2A), go the same way: submitted → working
(→ progress) → artifact → completed, or failed, rejected or canceled. A :class:`TaskRun` is
the only writer of its task: each change goes to the :class:`TaskStore` and then to the
task's listener. The run owns the cancel scope that CancelTask cancels, and contains the
failure of the work it wraps: an exception fails the task (logged and counted in
:class:`Faults`), never the service or the node running it.

    async with store.run(message, emit, owner=peer_owner(peer), where="a2a task") as run:
        await run.working()
        ...
        await run.complete(artifact)   # or run.fail(reason), run.reject(reason)
    return run.task

Every task has an owner (:mod:`meshnode.a2a.owners`): only its owner sees it (``get``,
``list``) and cancels it, the operator sees all. The store keeps every running task and,
of the finished ones, what the ``[limits]`` budgets allow: per owner and in all, counted in
tasks and in bytes; an owner over its share loses its own oldest first, and past the total
the owners with the worst record with this node lose theirs first. A peer or anonymous
client with too many tasks running is refused (A2A error BUSY) before its task exists.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from meshnode.a2a.owners import Owner, Quota
from meshnode.node.faults import Faults
from meshnode.node.limits import PeerLimits
from protocols.a2a import (
    TASK_NOT_CANCELABLE,
    TASK_NOT_FOUND,
    TERMINAL_STATES,
    A2AError,
    Artifact,
    ListTasks,
    Message,
    StreamEvent,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
    TextPart,
    apply_history_length,
    to_wire,
    transition,
    with_artifact,
)
from protocols.codec import pack

log = logging.getLogger(__name__)
#: Finished tasks kept for GetTask and ListTasks; running ones are never dropped.
KEPT_TASKS = 1000

Emit = Callable[[StreamEvent], Awaitable[None]]


async def no_emit(_: StreamEvent) -> None:
    pass


def wire_size(item: Task | Message) -> int:
    """The bytes ``item`` takes on the wire: what the store counts it as holding."""
    return len(pack(to_wire(item)))


@dataclass(slots=True)
class _Entry:
    """A task, who it belongs to, and what the store knows of its run."""

    task: Task
    owner: Owner
    #: The cancel scope of the run while it is under way, None once it has returned.
    scope: trio.CancelScope | None = None
    #: Bytes counted for the task (its message while it runs, the whole task once done).
    size: int = 0
    running: bool = True


class TaskStore:
    """This node's tasks, newest last: every running task and the finished ones the budgets
    of ``limits`` allow (at most ``limit`` tasks in all)."""

    def __init__(self, *, limit: int = KEPT_TASKS, faults: Faults | None = None,
                 limits: PeerLimits | None = None) -> None:
        self._limit = limit
        self.faults = faults if faults is not None else Faults()
        self.quota = Quota(limits if limits is not None else PeerLimits())
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    # ---- the A2A operations, for ``caller`` -------------------------------------------

    def get(self, task_id: str, caller: Owner) -> Task:
        return self._entry(task_id, caller).task

    def list(self, op: ListTasks, caller: Owner) -> tuple[Task, ...]:
        tasks = [
            apply_history_length(e.task, op.history_length)
            for e in reversed(self._entries.values())
            if caller.may_see(e.owner)
            and (op.context_id is None or e.task.context_id == op.context_id)
            and (op.state is None or e.task.status.state == op.state)
        ]
        return tuple(tasks[: op.page_size])

    def cancel(self, task_id: str, caller: Owner) -> Task:
        """Record ``task_id`` as canceled and stop its work; its run tells the listener."""
        entry = self._entry(task_id, caller)
        state = entry.task.status.state
        if entry.scope is None or state in TERMINAL_STATES:
            raise A2AError(TASK_NOT_CANCELABLE, f"task {task_id} is {state}")
        entry.task = transition(entry.task, TaskState.CANCELED, now=time.time())
        entry.scope.cancel()
        return entry.task

    def by_state(self) -> dict[TaskState, int]:
        """How many kept tasks are in each state (every state listed, for metrics)."""
        counts = dict.fromkeys(TaskState, 0)
        for entry in self._entries.values():
            counts[entry.task.status.state] += 1
        return counts

    def running(self) -> int:
        """How many tasks are under way (the node's load)."""
        return sum(1 for e in self._entries.values()
                   if e.scope is not None and e.task.status.state not in TERMINAL_STATES)

    def usage(self) -> dict[str, object]:
        """Tasks and bytes held, and tasks per kind of owner (for the status)."""
        return {"tasks": len(self._entries), "bytes": self.quota.bytes,
                "by_owner": dict(self.quota.owners())}

    # ---- running a task --------------------------------------------------------------

    @asynccontextmanager
    async def run(
        self, message: Message, emit: Emit = no_emit, *, owner: Owner, where: str = "task"
    ) -> AsyncIterator[TaskRun]:
        """A new task of ``owner`` for ``message``, run by the body of the ``async with``.

        Raises A2AError(BUSY), before the task exists, when ``owner`` may not start one now.
        The body drives the task to a final state through the run. An exception escaping
        it fails the task and is recorded in ``faults`` under ``where``; it is not re-raised.
        CancelTask ends the body (the listener gets the canceled status); a cancellation
        from outside (a deadline, the node stopping) records the task as canceled and
        passes through.
        """
        self.admit(owner)
        task = Task(
            id=str(uuid.uuid4()), context_id=message.context_id or str(uuid.uuid4()),
            status=TaskStatus(TaskState.SUBMITTED, timestamp=time.time()), history=(message,),
        )
        entry = _Entry(task, owner, size=wire_size(message))
        self._add(entry)
        run = TaskRun(entry, emit)
        with trio.CancelScope() as scope:
            entry.scope = scope
            try:
                await run._send(task)
                yield run
                if not run.done and not run.listener_gone:
                    raise RuntimeError("the task's work ended without a final state")
            except Exception as exc:
                self.faults.record(where, exc, task=task.id)
                # The reason may go to a peer: the details stay in this node's log.
                await run.fail(f"internal error ({type(exc).__name__}); the details are in "
                               "the log of the node that ran the task")
            except BaseException:
                run.stopped()
                raise
            finally:
                entry.scope = None
                self._finished(entry)
        await run.ended()

    def admit(self, owner: Owner) -> None:
        """Raise A2AError(BUSY) if ``owner`` may not start a task now."""
        self.quota.admit(owner, (e.owner for e in self._entries.values() if e.running))

    def _entry(self, task_id: str, caller: Owner) -> _Entry:
        entry = self._entries.get(task_id)
        if entry is None or not caller.may_see(entry.owner):
            # Another owner's task is answered as missing: its existence is not for them.
            raise A2AError(TASK_NOT_FOUND, f"no task {task_id} on this node")
        return entry

    def _add(self, entry: _Entry) -> None:
        self._entries[entry.task.id] = entry
        self.quota.started(entry.owner, entry.size)
        self._trim(entry.owner)

    def _finished(self, entry: _Entry) -> None:
        if not entry.running:
            return
        entry.running = False
        old, entry.size = entry.size, wire_size(entry.task)
        self.quota.finished(entry.owner, old, entry.size)
        if entry.task.id in self._entries:
            self._trim(entry.owner)

    def _trim(self, owner: Owner) -> None:
        """Drop finished tasks while ``owner`` is over its share (its own oldest first) and
        while the store is over its budgets (the worst-standing owner's oldest first). A
        running task stays however old it is."""
        while self.quota.over_share(owner):
            oldest = next((i for i, e in self._entries.items()
                           if e.owner == owner and not e.running), None)
            if oldest is None:
                break
            self._drop(oldest)
        while self.quota.over_total(len(self._entries), self._limit):
            victim = self.quota.victim((i, e.owner) for i, e in self._entries.items()
                                       if not e.running)
            if victim is None:
                break
            self._drop(victim)

    def _drop(self, task_id: str) -> None:
        entry = self._entries.pop(task_id)
        self.quota.dropped(entry.owner, entry.size)


class TaskRun:
    """The one writer of one task: each change is stored, then sent to the listener.

    A listener whose ``emit`` fails is gone: nothing more is sent to it, and the work,
    done for it, is cancelled. Changes after the task reached a final state (a progress
    report racing CancelTask, say) are dropped.
    """

    def __init__(self, entry: _Entry, emit: Emit) -> None:
        self._entry = entry
        self._emit = emit
        self._gone: str | None = None
        self._told_final = False

    @property
    def task(self) -> Task:
        return self._entry.task

    @property
    def done(self) -> bool:
        return self._entry.task.status.state in TERMINAL_STATES

    def message(self, text: str) -> Message:
        """An agent message about this task (a status message)."""
        task = self._entry.task
        return Message(role="agent", parts=(TextPart(text),), message_id=str(uuid.uuid4()),
                       context_id=task.context_id, task_id=task.id)

    @property
    def listener_gone(self) -> bool:
        return self._gone is not None

    async def _send(self, event: StreamEvent) -> None:
        if self._gone is not None:
            return
        try:
            await self._emit(event)
        except Exception as exc:
            self._gone = str(exc) or type(exc).__name__
            log.debug("task listener gone", extra={"task": self.task.id, "error": self._gone})
            if not self.done and self._entry.scope is not None:
                self._entry.scope.cancel()

    def _move(self, state: TaskState, reason: str | None = None) -> bool:
        """Store the task in ``state``; False (and nothing stored) once it is final."""
        if self.done:
            return False
        message = self.message(reason) if reason is not None else None
        self._entry.task = transition(self._entry.task, state, message=message, now=time.time())
        return True

    async def working(self, text: str | None = None, metadata: dict[str, Any] | None = None
                      ) -> None:
        """Into (or still in) the working state, with an optional progress message."""
        if self._move(TaskState.WORKING, text):
            await self._send(TaskStatusUpdateEvent(self.task.id, self.task.context_id,
                                                  self.task.status, metadata=metadata or {}))

    async def artifact(self, artifact: Artifact) -> None:
        if not self.done:
            self._entry.task = with_artifact(self.task, artifact)
            await self._send(TaskArtifactUpdateEvent(self.task.id, self.task.context_id,
                                                    artifact, last_chunk=True))

    async def complete(self, artifact: Artifact) -> None:
        await self.artifact(artifact)
        await self.finish(TaskState.COMPLETED)

    async def fail(self, reason: str) -> None:
        await self.finish(TaskState.FAILED, reason)

    async def reject(self, reason: str) -> None:
        await self.finish(TaskState.REJECTED, reason)

    async def finish(self, state: TaskState, reason: str | None = None) -> None:
        """Into the final ``state``; ``reason`` becomes the status message."""
        if not self._move(state, reason):
            return
        if reason is not None:
            log.info("task ended", extra={"task": self.task.id, "state": str(state),
                                          "reason": reason})
        await self._tell_final()

    async def _tell_final(self) -> None:
        self._told_final = True
        await self._send(TaskStatusUpdateEvent(self.task.id, self.task.context_id,
                                              self.task.status, final=True))

    async def ended(self) -> None:
        """After the work: a task canceled by CancelTask tells its listener so."""
        if self._gone is not None:
            self.stopped()
        elif self.task.status.state == TaskState.CANCELED and not self._told_final:
            await self._tell_final()

    def stopped(self) -> None:
        """Record, without telling anyone (there is no one, or no time), that the work
        stopped before the task reached a final state."""
        reason = (f"the asker went away ({self._gone})" if self._gone is not None
                  else "the task was stopped before it finished")
        self._move(TaskState.CANCELED, reason)
