"""The A2A task state machine, and the pure functions that derive a task's next version."""

from __future__ import annotations

from dataclasses import replace

from protocols.a2a.model import (
    MAX_HISTORY,
    TERMINAL_STATES,
    Artifact,
    Message,
    Task,
    TaskState,
    TaskStatus,
)
from protocols.errors import ProtocolError

# ---- the task state machine -----------------------------------------------------------------


class InvalidTransition(ProtocolError):
    """A task may not move from its current state to the requested one."""

    def __init__(self, src: TaskState, dst: TaskState) -> None:
        super().__init__(f"a task cannot go from {src.value!r} to {dst.value!r}")
        self.src = src
        self.dst = dst


_S = TaskState
#: working -> working is a progress update (a new status message, same state).
LEGAL_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    _S.SUBMITTED: frozenset({_S.WORKING, _S.REJECTED, _S.CANCELED, _S.FAILED}),
    _S.WORKING: frozenset(
        {_S.WORKING, _S.INPUT_REQUIRED, _S.AUTH_REQUIRED, _S.COMPLETED, _S.FAILED, _S.CANCELED}
    ),
    _S.INPUT_REQUIRED: frozenset({_S.WORKING, _S.CANCELED, _S.FAILED}),
    _S.AUTH_REQUIRED: frozenset({_S.WORKING, _S.CANCELED, _S.FAILED}),
    **{state: frozenset() for state in TERMINAL_STATES},
}


def can_transition(src: TaskState, dst: TaskState) -> bool:
    return dst in LEGAL_TRANSITIONS[src]


def transition(task: Task, state: TaskState, *, message: Message | None = None, now: float) -> Task:
    """``task`` in its new ``state`` (status message ``message``, stamped ``now``)."""
    if not can_transition(task.status.state, state):
        raise InvalidTransition(task.status.state, state)
    return replace(task, status=TaskStatus(state, message, now))


def with_history(task: Task, message: Message) -> Task:
    """``task`` with ``message`` appended to its history (the newest MAX_HISTORY are kept)."""
    return replace(task, history=(*task.history, message)[-MAX_HISTORY:])


def with_artifact(task: Task, artifact: Artifact, *, append: bool = False) -> Task:
    """``task`` with ``artifact`` added, or replacing the one with the same id; with
    ``append``, its parts are added to those of the existing artifact instead."""
    artifacts = list(task.artifacts)
    for i, old in enumerate(artifacts):
        if old.artifact_id == artifact.artifact_id:
            if append:
                artifact = replace(old, parts=old.parts + artifact.parts)
            artifacts[i] = artifact
            break
    else:
        artifacts.append(artifact)
    return replace(task, artifacts=tuple(artifacts))


def apply_history_length(task: Task, history_length: int | None) -> Task:
    """A2A history-length semantics: None keeps all, 0 none, n the newest n messages."""
    if history_length is None or len(task.history) <= history_length:
        return task
    keep = task.history[len(task.history) - history_length :]
    return replace(task, history=keep)
