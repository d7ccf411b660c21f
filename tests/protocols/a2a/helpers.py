"""Hypothesis strategies of the A2A model, a fake A2A handler, and an in-process ASGI caller."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import trio
from hypothesis import strategies as st

from meshnode.api.app import ApiApp
from protocols.a2a import (
    INVALID_PARAMS,
    TASK_NOT_CANCELABLE,
    TASK_NOT_FOUND,
    TERMINAL_STATES,
    A2AError,
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentProvider,
    AgentSkill,
    Artifact,
    CancelTask,
    DataPart,
    FilePart,
    GetTask,
    ListTasks,
    Message,
    Part,
    SendMessage,
    SendStreamingMessage,
    StreamEvent,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
    TextPart,
    transition,
    with_artifact,
    with_history,
)

TOKEN = "a2a-test-token"
NOW = 1_700_000_000.0

# ---- strategies ---------------------------------------------------------------------------------

ids = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=24)
opt_ids = st.none() | ids
texts = st.text(max_size=60)
# Integers stay within +-2**53: a2a-sdk carries data-part and metadata numbers as doubles.
plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
maps = st.dictionaries(st.text(max_size=8), plain, max_size=3)
# Millisecond timestamps up to 2100: exact through RFC 3339 and back.
timestamps = st.integers(0, 4_102_444_800_000).map(lambda ms: ms / 1000)

text_parts = st.builds(TextPart, texts)
data_parts = st.builds(DataPart, maps)
file_parts = st.builds(
    FilePart,
    name=opt_ids,
    mime_type=st.none() | st.sampled_from(["text/plain", "application/pdf"]),
    data=st.binary(max_size=40),
    uri=st.none(),
) | st.builds(
    FilePart,
    name=opt_ids,
    mime_type=st.none() | st.just("image/png"),
    data=st.none(),
    uri=st.just("https://example.org/f.png") | ids,
)
parts: st.SearchStrategy[Part] = text_parts | data_parts | file_parts
part_tuples = st.lists(parts, max_size=3).map(tuple)

messages = st.builds(
    Message,
    role=st.sampled_from(["user", "agent"]),
    parts=part_tuples,
    message_id=ids,
    context_id=opt_ids,
    task_id=opt_ids,
    metadata=maps,
)
states = st.sampled_from(list(TaskState))
statuses = st.builds(TaskStatus, states, st.none() | messages, timestamps)
artifacts = st.builds(
    Artifact,
    artifact_id=ids,
    name=opt_ids,
    parts=part_tuples,
    metadata=maps,
    description=opt_ids,
)
tasks = st.builds(
    Task,
    id=ids,
    context_id=ids,
    status=statuses,
    history=st.lists(messages, max_size=2).map(tuple),
    artifacts=st.lists(artifacts, max_size=2).map(tuple),
    metadata=maps,
)
status_events = st.builds(TaskStatusUpdateEvent, ids, ids, statuses, st.booleans(), maps)
artifact_events = st.builds(
    TaskArtifactUpdateEvent, ids, ids, artifacts, st.booleans(), st.booleans(), maps
)
stream_events: st.SearchStrategy[StreamEvent] = tasks | messages | status_events | artifact_events
short_strs = st.lists(st.text(max_size=10), max_size=3).map(tuple)
skills = st.builds(AgentSkill, ids, texts, texts, short_strs, short_strs, short_strs, short_strs)
interfaces = st.builds(
    AgentInterface,
    st.just("http://127.0.0.1:7700/a2a") | ids,
    st.sampled_from(["JSONRPC", "HTTP+JSON"]),
    st.sampled_from(["1.0", "0.3.0"]),
)
cards = st.builds(
    AgentCard,
    name=texts,
    description=texts,
    version=st.text(max_size=10),
    skills=st.lists(skills, max_size=3).map(tuple),
    capabilities=st.builds(AgentCapabilities, st.booleans(), st.booleans(), st.booleans()),
    default_input_modes=short_strs,
    default_output_modes=short_strs,
    supported_interfaces=st.lists(interfaces, max_size=3).map(tuple),
    provider=st.none() | st.builds(AgentProvider, texts, ids),
    documentation_url=opt_ids,
    icon_url=opt_ids,
)
history_lengths = st.none() | st.integers(0, 256)
operations = st.one_of(
    st.builds(SendMessage, messages, st.booleans(), history_lengths),
    st.builds(SendStreamingMessage, messages),
    st.builds(GetTask, ids, history_lengths),
    st.builds(
        ListTasks, opt_ids, st.none() | states, st.integers(1, 100), history_lengths, st.booleans()
    ),
    st.builds(CancelTask, ids),
)

# ---- a fake handler -----------------------------------------------------------------------------

CARD = AgentCard(
    name="Echo agent",
    description="Repeats what it is told.",
    version="1.2.3",
    skills=(
        AgentSkill(
            "echo",
            "Echo",
            "Answers with the text it was sent.",
            tags=("test", "echo"),
            examples=("hello",),
        ),
    ),
    capabilities=AgentCapabilities(streaming=True),
)


def agent_text(text: str, *, context_id: str | None = None, task_id: str | None = None) -> Message:
    return Message("agent", (TextPart(text),), f"reply-{text}", context_id, task_id)


@dataclass
class FakeHandler:
    """Answers "echo: <text>". Special texts: "message" answers with a Message; "fail" and
    "boom" fail (A2AError, RuntimeError) -- in a stream after the first event; "slow" waits
    ``slow_s`` between stream events; "hang" streams one event, then waits forever."""

    slow_s: float = 1.0
    tasks: dict[str, Task] = field(default_factory=dict)
    stream_closed: list[str] = field(default_factory=list)
    stream_started: trio.Event = field(default_factory=trio.Event)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    async def card(self) -> AgentCard:
        return CARD

    def _new_task(self, message: Message) -> Task:
        n = next(self._ids)
        task = Task(f"task-{n}", message.context_id or f"ctx-{n}", TaskStatus(TaskState.SUBMITTED))
        task = with_history(task, replace(message, task_id=task.id, context_id=task.context_id))
        self.tasks[task.id] = task
        return task

    async def send_message(self, op: SendMessage) -> Task | Message:
        text = op.message.text
        if text == "message":
            return agent_text("a message, not a task", context_id=op.message.context_id)
        if text == "fail":
            raise A2AError(INVALID_PARAMS, "cannot do that")
        if text == "boom":
            raise RuntimeError("handler exploded")
        if text == "wrong-type":
            return "not a task"  # type: ignore[return-value]
        task = self._new_task(op.message)
        reply = agent_text(f"echo: {text}", context_id=task.context_id, task_id=task.id)
        if text == "wait":
            task = transition(task, TaskState.WORKING, now=NOW)
        else:
            task = transition(task, TaskState.WORKING, now=NOW)
            task = with_artifact(task, Artifact("answer", "answer", (TextPart(f"echo: {text}"),)))
            task = with_history(task, reply)
            task = transition(task, TaskState.COMPLETED, message=reply, now=NOW + 1)
        self.tasks[task.id] = task
        return task

    async def send_streaming(self, op: SendStreamingMessage) -> AsyncIterator[StreamEvent]:
        text = op.message.text
        task = self._new_task(op.message)
        self.stream_started.set()
        try:
            yield task
            if text == "boom":
                raise RuntimeError("stream exploded")
            if text == "fail":
                raise A2AError(TASK_NOT_FOUND, "lost the task")
            if text == "wrong-type":
                yield "not an event"  # type: ignore[misc]
            if text == "hang":
                await trio.sleep_forever()
            if text == "slow":
                await trio.sleep(self.slow_s)
            task = transition(task, TaskState.WORKING, now=NOW)
            yield TaskStatusUpdateEvent(task.id, task.context_id, task.status)
            if text == "slow":
                await trio.sleep(self.slow_s)
            artifact = Artifact("answer", "answer", (TextPart(f"echo: {text}"),))
            task = with_artifact(task, artifact)
            yield TaskArtifactUpdateEvent(task.id, task.context_id, artifact, last_chunk=True)
            reply = agent_text(f"echo: {text}", context_id=task.context_id, task_id=task.id)
            task = transition(task, TaskState.COMPLETED, message=reply, now=NOW + 1)
            self.tasks[task.id] = task
            yield TaskStatusUpdateEvent(task.id, task.context_id, task.status, final=True)
        finally:
            self.stream_closed.append(task.id)

    async def get_task(self, op: GetTask) -> Task:
        try:
            return self.tasks[op.task_id]
        except KeyError:
            raise A2AError(TASK_NOT_FOUND, f"no task {op.task_id}") from None

    async def list_tasks(self, op: ListTasks) -> tuple[Task, ...]:
        return tuple(
            t
            for t in self.tasks.values()
            if (op.context_id is None or t.context_id == op.context_id)
            and (op.state is None or t.status.state == op.state)
        )

    async def cancel_task(self, op: CancelTask) -> Task:
        task = await self.get_task(GetTask(op.task_id))
        if task.status.state in TERMINAL_STATES:
            raise A2AError(TASK_NOT_CANCELABLE, f"task {task.id} is {task.status.state.value}")
        task = transition(task, TaskState.CANCELED, now=NOW + 2)
        self.tasks[task.id] = task
        return task


# ---- calling an ASGI app in-process -------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[bytes, bytes]
    chunks: list[bytes]
    ended: bool

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def json(self) -> Any:
        return json.loads(self.body)

    def sse(self) -> list[tuple[str, Any]]:
        """(event name, parsed data) of each SSE event; comments are skipped."""
        events = []
        for block in self.body.decode().split("\n\n"):
            name, data = "message", []
            for line in block.split("\n"):
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
            if data:
                events.append((name, json.loads("\n".join(data))))
        return events


async def call(
    app: ApiApp,
    method: str,
    path: str,
    body: bytes | dict[str, Any] = b"",
    *,
    token: str | None = TOKEN,
    headers: list[tuple[bytes, bytes]] | None = None,
    disconnect: trio.Event | None = None,
) -> Reply:
    """Run one request through ``app``; the client "disconnects" when ``disconnect`` is set
    (never, without it: receive then blocks as it does under a real server)."""
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    all_headers = [(b"host", b"localhost:7700"), *(headers or [])]
    if token is not None:
        all_headers.append((b"authorization", f"Bearer {token}".encode()))
    sent: list[dict[str, Any]] = []
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        if disconnect is None:
            await trio.sleep_forever()
        else:
            await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": all_headers,
        "scheme": "http",
        "client": ("127.0.0.1", 50000),
    }
    await app(scope, receive, send)
    assert sent[0]["type"] == "http.response.start"
    bodies = [m for m in sent[1:] if m["type"] == "http.response.body"]
    return Reply(
        status=sent[0]["status"],
        headers=dict(sent[0]["headers"]),
        chunks=[m["body"] for m in bodies if m["body"]],
        ended=bool(bodies) and not bodies[-1].get("more_body", False),
    )
