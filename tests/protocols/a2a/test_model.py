"""The A2A data model: the task state machine, task helpers and free-form value checks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.a2a import (
    INTERRUPTED_STATES,
    MAX_DEPTH,
    MAX_HISTORY,
    MAX_VALUES,
    TERMINAL_STATES,
    Artifact,
    DataPart,
    FilePart,
    InvalidTransition,
    Message,
    Task,
    TaskState,
    TaskStatus,
    TextPart,
    apply_history_length,
    can_transition,
    check_plain,
    transition,
    with_artifact,
    with_history,
)
from protocols.errors import DecodeError, ProtocolError
from tests.protocols.a2a.helpers import NOW, messages, states, tasks

PROPS = settings(
    deadline=timedelta(seconds=2), max_examples=100, suppress_health_check=[HealthCheck.too_slow]
)
S = TaskState
# The legal moves, written out independently of the module under test.
LEGAL = {
    (S.SUBMITTED, S.WORKING),
    (S.SUBMITTED, S.REJECTED),
    (S.SUBMITTED, S.CANCELED),
    (S.SUBMITTED, S.FAILED),
    (S.WORKING, S.WORKING),  # a progress update
    (S.WORKING, S.INPUT_REQUIRED),
    (S.WORKING, S.AUTH_REQUIRED),
    (S.WORKING, S.COMPLETED),
    (S.WORKING, S.FAILED),
    (S.WORKING, S.CANCELED),
    (S.INPUT_REQUIRED, S.WORKING),
    (S.INPUT_REQUIRED, S.CANCELED),
    (S.INPUT_REQUIRED, S.FAILED),
    (S.AUTH_REQUIRED, S.WORKING),
    (S.AUTH_REQUIRED, S.CANCELED),
    (S.AUTH_REQUIRED, S.FAILED),
}


def new_task() -> Task:
    return Task("t1", "c1", TaskStatus(S.SUBMITTED, None, NOW))


def test_state_values_are_the_a2a_spellings() -> None:
    assert [s.value for s in TaskState] == [
        "submitted",
        "working",
        "input-required",
        "auth-required",
        "completed",
        "failed",
        "canceled",
        "rejected",
    ]
    assert {s.value for s in TERMINAL_STATES} == {"completed", "failed", "canceled", "rejected"}
    assert {s.value for s in INTERRUPTED_STATES} == {"input-required", "auth-required"}


@pytest.mark.parametrize("src", list(TaskState))
@pytest.mark.parametrize("dst", list(TaskState))
def test_every_pair_of_states(src: TaskState, dst: TaskState) -> None:
    task = Task("t", "c", TaskStatus(src, None, NOW))
    assert can_transition(src, dst) == ((src, dst) in LEGAL)
    if (src, dst) in LEGAL:
        note = Message("agent", (TextPart("progress"),), "m1")
        moved = transition(task, dst, message=note, now=NOW + 5)
        assert moved.status == TaskStatus(dst, note, NOW + 5)
        assert (moved.id, moved.history, moved.artifacts) == (task.id, task.history, ())
        assert task.status.state == src  # the original is untouched
    else:
        with pytest.raises(InvalidTransition) as info:
            transition(task, dst, now=NOW)
        assert isinstance(info.value, ProtocolError)
        assert (info.value.src, info.value.dst) == (src, dst)
        assert src.value in str(info.value) and dst.value in str(info.value)


@PROPS
@given(st.lists(states, max_size=30))
def test_random_transition_sequences(path: list[TaskState]) -> None:
    task = new_task()
    ended = False
    for step, state in enumerate(path):
        current = task.status.state
        if (current, state) in LEGAL:
            assert not ended
            task = transition(task, state, now=NOW + step)
            assert task.status.state == state
            assert task.status.timestamp == NOW + step
        else:
            with pytest.raises(InvalidTransition):
                transition(task, state, now=NOW + step)
        ended = task.status.state in TERMINAL_STATES
    if ended:  # terminal is final: nothing moves it again
        for state in TaskState:
            with pytest.raises(InvalidTransition):
                transition(task, state, now=NOW)


def test_a_typical_life() -> None:
    task = new_task()
    for state in (S.WORKING, S.INPUT_REQUIRED, S.WORKING, S.WORKING, S.COMPLETED):
        task = transition(task, state, now=NOW)
    assert task.status.state == S.COMPLETED


def test_with_history_keeps_the_newest() -> None:
    task = new_task()
    for i in range(MAX_HISTORY + 5):
        task = with_history(task, Message("user", (TextPart(str(i)),), f"m{i}"))
    assert len(task.history) == MAX_HISTORY
    assert task.history[0].message_id == "m5"
    assert task.history[-1].message_id == f"m{MAX_HISTORY + 4}"


def test_with_artifact_adds_replaces_and_appends() -> None:
    task = new_task()
    a = Artifact("a", "first", (TextPart("one"),))
    b = Artifact("b", None, (DataPart({"k": 1}),))
    task = with_artifact(with_artifact(task, a), b)
    assert [x.artifact_id for x in task.artifacts] == ["a", "b"]
    task = with_artifact(task, Artifact("a", "second", (TextPart("two"),)))
    assert task.artifacts[0] == Artifact("a", "second", (TextPart("two"),))
    task = with_artifact(task, Artifact("a", "ignored", (TextPart("three"),)), append=True)
    assert task.artifacts[0].parts == (TextPart("two"), TextPart("three"))
    assert task.artifacts[0].name == "second"
    assert task.artifacts[0].text == "two\nthree"
    # append to an artifact that does not exist yet simply adds it
    task = with_artifact(task, Artifact("c", None, (TextPart("x"),)), append=True)
    assert [x.artifact_id for x in task.artifacts] == ["a", "b", "c"]


@PROPS
@given(tasks, st.none() | st.integers(0, 5))
def test_apply_history_length(task: Task, n: int | None) -> None:
    trimmed = apply_history_length(task, n)
    if n is None:
        assert trimmed == task
    else:
        assert trimmed.history == (task.history[-n:] if n else ())
    assert trimmed.status == task.status and trimmed.artifacts == task.artifacts


@given(messages)
def test_message_text_joins_text_parts(message: Message) -> None:
    texts = [p.text for p in message.parts if isinstance(p, TextPart)]
    assert message.text == "\n".join(texts)


def test_file_part_needs_exactly_one_source() -> None:
    FilePart("a", None, b"x", None)
    FilePart(None, None, None, "https://x")
    with pytest.raises(ValueError):
        FilePart("a", None, None, None)
    with pytest.raises(ValueError):
        FilePart("a", None, b"x", "https://x")


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        float("inf"),
        2**64,
        -(2**63) - 1,
        b"bytes",
        (1, 2),
        {1: "int key"},
        {"k": {"j": [set()]}},
        nested(MAX_DEPTH + 1),
        list(range(MAX_VALUES + 1)),
    ],
)
def test_check_plain_refuses(value: object) -> None:
    with pytest.raises(DecodeError):
        check_plain(value, "metadata")


@pytest.mark.parametrize(
    "value",
    [None, True, 2**64 - 1, -(2**63), 1.5, "x", nested(MAX_DEPTH), list(range(MAX_VALUES - 1))],
)
def test_check_plain_accepts(value: object) -> None:
    check_plain(value, "metadata")
