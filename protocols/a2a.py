"""The A2A v1.0 data model, the task state machine, and the frames of ``/meshnode/a2a/1.0.0``.

The model is plain frozen dataclasses (the JSON form for HTTP clients lives in
:mod:`protocols.a2a_json`). On a libp2p stream, the asking side writes one request frame and
the answering side writes result, event, error and end frames carrying the same request id::

    request  {v, type: "request", id, op, body}
    result   {v, type: "result", id, kind: task|message|card|tasks, body}
    event    {v, type: "event", id, kind: task|message|status|artifact, body}
    error    {v, type: "error", id, code, message}
    end      {v, type: "end", id}

Each payload is msgpack (:func:`protocols.codec.pack`), to be length-prefixed with
:func:`protocols.codec.encode_frame`. Every decoder bounds sizes, counts and nesting, and
raises :class:`~protocols.errors.DecodeError` (or :class:`A2AError`) and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal, TypeAlias, TypeVar, cast

from protocols.codec import Fields, pack, unpack
from protocols.errors import DecodeError, ProtocolError

A2A_PROTOCOL = "/meshnode/a2a/1.0.0"
WIRE_VERSION = 1

# ---- limits (shared by the msgpack and the JSON decoders) -----------------------------------

MAX_ID = 256
MAX_TEXT = 512 * 1024
MAX_NAME = 256
MAX_DESCRIPTION = 8 * 1024
MAX_URI = 2048
MAX_MIME = 256
MAX_FILE = 768 * 1024
MAX_PARTS = 64
MAX_HISTORY = 256
MAX_ARTIFACTS = 64
MAX_SKILLS = 64
MAX_TAGS = 32
MAX_INTERFACES = 8
MAX_TASKS = 100
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = MAX_TASKS
#: Nesting depth and total number of values of free-form metadata and data-part content.
MAX_DEPTH = 16
MAX_VALUES = 4096
MAX_ERROR_MESSAGE = 4096
#: Timestamps are seconds since the epoch, from 1970 to the end of year 9999.
MAX_TIMESTAMP = 253_402_300_799.0

# ---- error codes (JSON-RPC 2.0 and A2A, as a2a-sdk maps them) -------------------------------

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
TASK_NOT_FOUND = -32001
TASK_NOT_CANCELABLE = -32002
PUSH_NOTIFICATION_NOT_SUPPORTED = -32003
UNSUPPORTED_OPERATION = -32004
CONTENT_TYPE_NOT_SUPPORTED = -32005
INVALID_AGENT_RESPONSE = -32006
EXTENDED_AGENT_CARD_NOT_CONFIGURED = -32007
EXTENSION_SUPPORT_REQUIRED = -32008
VERSION_NOT_SUPPORTED = -32009

#: The reason string of each code (``google.rpc.ErrorInfo.reason`` in A2A v1.0 errors).
ERROR_REASONS: dict[int, str] = {
    PARSE_ERROR: "PARSE_ERROR",
    INVALID_REQUEST: "INVALID_REQUEST",
    METHOD_NOT_FOUND: "METHOD_NOT_FOUND",
    INVALID_PARAMS: "INVALID_PARAMS",
    INTERNAL_ERROR: "INTERNAL_ERROR",
    TASK_NOT_FOUND: "TASK_NOT_FOUND",
    TASK_NOT_CANCELABLE: "TASK_NOT_CANCELABLE",
    PUSH_NOTIFICATION_NOT_SUPPORTED: "PUSH_NOTIFICATION_NOT_SUPPORTED",
    UNSUPPORTED_OPERATION: "UNSUPPORTED_OPERATION",
    CONTENT_TYPE_NOT_SUPPORTED: "CONTENT_TYPE_NOT_SUPPORTED",
    INVALID_AGENT_RESPONSE: "INVALID_AGENT_RESPONSE",
    EXTENDED_AGENT_CARD_NOT_CONFIGURED: "EXTENDED_AGENT_CARD_NOT_CONFIGURED",
    EXTENSION_SUPPORT_REQUIRED: "EXTENSION_SUPPORT_REQUIRED",
    VERSION_NOT_SUPPORTED: "VERSION_NOT_SUPPORTED",
}


class A2AError(ProtocolError):
    """An A2A operation failed with a JSON-RPC / A2A error ``code`` (e.g. TASK_NOT_FOUND).

    ``request_id`` is set when the failing request's id is known (a decoder that could read
    the id but not the rest of a request), so that the reply can still name the request.
    """

    def __init__(self, code: int, message: str, *, request_id: str | int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


# ---- the data model ------------------------------------------------------------------------

Role: TypeAlias = Literal["user", "agent"]
ROLES: tuple[Role, ...] = ("user", "agent")


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


@dataclass(frozen=True, slots=True)
class DataPart:
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FilePart:
    """A file, either inline (``data``) or by reference (``uri``): exactly one of the two."""

    name: str | None = None
    mime_type: str | None = None
    data: bytes | None = None
    uri: str | None = None

    def __post_init__(self) -> None:
        if (self.data is None) == (self.uri is None):
            raise ValueError("a file part has exactly one of data and uri")


Part: TypeAlias = TextPart | DataPart | FilePart


def text_of(parts: tuple[Part, ...]) -> str:
    """The text parts joined by newlines."""
    return "\n".join(p.text for p in parts if isinstance(p, TextPart))


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    parts: tuple[Part, ...]
    message_id: str
    context_id: str | None = None
    task_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return text_of(self.parts)


class TaskState(StrEnum):
    SUBMITTED = "submitted"
    WORKING = "working"
    INPUT_REQUIRED = "input-required"
    AUTH_REQUIRED = "auth-required"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    REJECTED = "rejected"


TERMINAL_STATES = frozenset(
    {TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELED, TaskState.REJECTED}
)
#: States where the agent waits for the client: a stream of events ends there too.
INTERRUPTED_STATES = frozenset({TaskState.INPUT_REQUIRED, TaskState.AUTH_REQUIRED})


@dataclass(frozen=True, slots=True)
class TaskStatus:
    state: TaskState
    message: Message | None = None
    timestamp: float = 0.0


@dataclass(frozen=True, slots=True)
class Artifact:
    artifact_id: str
    name: str | None
    parts: tuple[Part, ...]
    metadata: dict[str, Any] = field(default_factory=dict)
    description: str | None = None

    @property
    def text(self) -> str:
        return text_of(self.parts)


@dataclass(frozen=True, slots=True)
class Task:
    id: str
    context_id: str
    status: TaskStatus
    history: tuple[Message, ...] = ()
    artifacts: tuple[Artifact, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TaskStatusUpdateEvent:
    """A new status of a task; ``final`` marks the last event of a stream (A2A v1.0 JSON has
    no such field: there it is implied by a terminal or interrupted state)."""

    task_id: str
    context_id: str
    status: TaskStatus
    final: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TaskArtifactUpdateEvent:
    task_id: str
    context_id: str
    artifact: Artifact
    append: bool = False
    last_chunk: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


StreamEvent: TypeAlias = Task | Message | TaskStatusUpdateEvent | TaskArtifactUpdateEvent


@dataclass(frozen=True, slots=True)
class AgentSkill:
    id: str
    name: str
    description: str
    tags: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    input_modes: tuple[str, ...] = ()
    output_modes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AgentCapabilities:
    streaming: bool = True
    push_notifications: bool = False
    extended_agent_card: bool = False


#: Protocol bindings of A2A v1.0 (``AgentInterface.protocol_binding``).
JSONRPC = "JSONRPC"
HTTP_JSON = "HTTP+JSON"
GRPC = "GRPC"


@dataclass(frozen=True, slots=True)
class AgentInterface:
    url: str
    protocol_binding: str = JSONRPC
    protocol_version: str = "1.0"


@dataclass(frozen=True, slots=True)
class AgentProvider:
    organization: str
    url: str


@dataclass(frozen=True, slots=True)
class AgentCard:
    name: str
    description: str
    version: str
    skills: tuple[AgentSkill, ...] = ()
    capabilities: AgentCapabilities = field(default_factory=AgentCapabilities)
    default_input_modes: tuple[str, ...] = ("text/plain",)
    default_output_modes: tuple[str, ...] = ("text/plain",)
    supported_interfaces: tuple[AgentInterface, ...] = ()
    provider: AgentProvider | None = None
    documentation_url: str | None = None
    icon_url: str | None = None

    @property
    def url(self) -> str | None:
        """The URL of the first JSON-RPC interface (of any interface if none is JSON-RPC)."""
        for interface in self.supported_interfaces:
            if interface.protocol_binding == JSONRPC:
                return interface.url
        return self.supported_interfaces[0].url if self.supported_interfaces else None


# ---- operations ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendMessage:
    message: Message
    blocking: bool = True
    history_length: int | None = None


@dataclass(frozen=True, slots=True)
class SendStreamingMessage:
    message: Message


@dataclass(frozen=True, slots=True)
class GetTask:
    task_id: str
    history_length: int | None = None


@dataclass(frozen=True, slots=True)
class ListTasks:
    context_id: str | None = None
    state: TaskState | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    history_length: int | None = None
    include_artifacts: bool = False


@dataclass(frozen=True, slots=True)
class CancelTask:
    task_id: str


@dataclass(frozen=True, slots=True)
class GetAgentCard:
    pass


Operation: TypeAlias = (
    SendMessage | SendStreamingMessage | GetTask | ListTasks | CancelTask | GetAgentCard
)

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


# ---- validation of free-form values ----------------------------------------------------------


def check_plain(
    value: Any, what: str, *, max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES
) -> None:
    """Check that ``value`` is JSON-compatible plain data that msgpack can carry too.

    None, booleans, 64-bit integers, finite floats, strings, lists and string-keyed maps,
    nested at most ``max_depth`` deep, at most ``max_values`` values in all.
    """
    budget = max_values

    def walk(v: Any, depth: int) -> None:
        nonlocal budget
        budget -= 1
        if budget < 0:
            raise DecodeError(f"{what}: more than {max_values} values")
        if v is None or isinstance(v, bool | str):
            return
        if isinstance(v, int):
            if not -(2**63) <= v < 2**64:
                raise DecodeError(f"{what}: integer out of the 64-bit range")
            return
        if isinstance(v, float):
            if not math.isfinite(v):
                raise DecodeError(f"{what}: {v!r} is not a finite number")
            return
        if depth >= max_depth:
            raise DecodeError(f"{what}: nested deeper than {max_depth}")
        if isinstance(v, list):
            for item in v:
                walk(item, depth + 1)
        elif isinstance(v, dict):
            for key, item in v.items():
                if not isinstance(key, str):
                    raise DecodeError(f"{what}: map keys must be strings")
                walk(item, depth + 1)
        else:
            raise DecodeError(f"{what}: {type(v).__name__} is not allowed")

    walk(value, 0)


def plain_map(value: Any, what: str) -> dict[str, Any]:
    """A checked free-form map (metadata, data-part content); None means empty."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DecodeError(f"{what}: expected a map, got {type(value).__name__}")
    check_plain(value, what)
    return value


def check_timestamp(value: float, what: str) -> float:
    if not (math.isfinite(value) and 0.0 <= value <= MAX_TIMESTAMP):
        raise DecodeError(f"{what}: timestamp {value!r} out of range")
    return value


# ---- msgpack wire form: encoding ---------------------------------------------------------------


def _part_to_wire(part: Part) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"kind": "text", "text": part.text}
    if isinstance(part, DataPart):
        return {"kind": "data", "data": part.data}
    return {
        "kind": "file",
        "name": part.name,
        "mime_type": part.mime_type,
        "bytes": part.data,
        "uri": part.uri,
    }


def _message_to_wire(m: Message) -> dict[str, Any]:
    return {
        "role": m.role,
        "parts": [_part_to_wire(p) for p in m.parts],
        "message_id": m.message_id,
        "context_id": m.context_id,
        "task_id": m.task_id,
        "metadata": m.metadata,
    }


def _status_to_wire(s: TaskStatus) -> dict[str, Any]:
    message = None if s.message is None else _message_to_wire(s.message)
    return {"state": s.state.value, "message": message, "timestamp": float(s.timestamp)}


def _artifact_to_wire(a: Artifact) -> dict[str, Any]:
    return {
        "artifact_id": a.artifact_id,
        "name": a.name,
        "description": a.description,
        "parts": [_part_to_wire(p) for p in a.parts],
        "metadata": a.metadata,
    }


def _task_to_wire(t: Task) -> dict[str, Any]:
    return {
        "id": t.id,
        "context_id": t.context_id,
        "status": _status_to_wire(t.status),
        "history": [_message_to_wire(m) for m in t.history],
        "artifacts": [_artifact_to_wire(a) for a in t.artifacts],
        "metadata": t.metadata,
    }


def _status_event_to_wire(e: TaskStatusUpdateEvent) -> dict[str, Any]:
    return {
        "task_id": e.task_id,
        "context_id": e.context_id,
        "status": _status_to_wire(e.status),
        "final": e.final,
        "metadata": e.metadata,
    }


def _artifact_event_to_wire(e: TaskArtifactUpdateEvent) -> dict[str, Any]:
    return {
        "task_id": e.task_id,
        "context_id": e.context_id,
        "artifact": _artifact_to_wire(e.artifact),
        "append": e.append,
        "last_chunk": e.last_chunk,
        "metadata": e.metadata,
    }


def card_to_wire(card: AgentCard) -> dict[str, Any]:
    """The agent card as plain msgpack-able data (for presence announcements)."""
    return {
        "name": card.name,
        "description": card.description,
        "version": card.version,
        "skills": [
            {
                "id": s.id,
                "name": s.name,
                "description": s.description,
                "tags": list(s.tags),
                "examples": list(s.examples),
                "input_modes": list(s.input_modes),
                "output_modes": list(s.output_modes),
            }
            for s in card.skills
        ],
        "capabilities": {
            "streaming": card.capabilities.streaming,
            "push_notifications": card.capabilities.push_notifications,
            "extended_agent_card": card.capabilities.extended_agent_card,
        },
        "default_input_modes": list(card.default_input_modes),
        "default_output_modes": list(card.default_output_modes),
        "interfaces": [
            {"url": i.url, "binding": i.protocol_binding, "version": i.protocol_version}
            for i in card.supported_interfaces
        ],
        "provider": None
        if card.provider is None
        else {"organization": card.provider.organization, "url": card.provider.url},
        "documentation_url": card.documentation_url,
        "icon_url": card.icon_url,
    }


_TO_WIRE: dict[type, Callable[[Any], dict[str, Any]]] = {
    Task: _task_to_wire,
    Message: _message_to_wire,
    AgentCard: card_to_wire,
    Artifact: _artifact_to_wire,
    TaskStatus: _status_to_wire,
    TaskStatusUpdateEvent: _status_event_to_wire,
    TaskArtifactUpdateEvent: _artifact_event_to_wire,
}


def to_wire(
    obj: Task | Message | AgentCard | Artifact | TaskStatus | StreamEvent,
) -> dict[str, Any]:
    """``obj`` as plain msgpack-able data (the body of a frame)."""
    encode = _TO_WIRE.get(type(obj))
    if encode is None:
        raise TypeError(f"no wire form for {type(obj).__name__}")
    return encode(obj)


# ---- msgpack wire form: decoding ---------------------------------------------------------------


def _opt_int(f: Fields, obj: dict[str, Any], key: str, *, lo: int, hi: int) -> int | None:
    return None if obj.get(key) is None else f.int(key, lo=lo, hi=hi)


def _fields(obj: Any, what: str) -> tuple[Fields, dict[str, Any]]:
    f = Fields(obj, what)  # checks that obj is a map
    return f, cast(dict[str, Any], obj)


def _items(f: Fields, obj: dict[str, Any], key: str, max_items: int) -> list[Any]:
    """An optional list field: missing or None is empty."""
    return [] if obj.get(key) is None else f.list(key, max_items=max_items)


def _strs(f: Fields, obj: dict[str, Any], key: str, max_items: int) -> tuple[str, ...]:
    if obj.get(key) is None:
        return ()
    return tuple(f.str_list(key, max_items=max_items, max_len=MAX_NAME))


def _part_from_wire(obj: Any, what: str) -> Part:
    f, raw = _fields(obj, what)
    kind = f.str("kind", max_len=16)
    if kind == "text":
        return TextPart(f.str("text", max_len=MAX_TEXT))
    if kind == "data":
        return DataPart(plain_map(f.map("data", max_items=MAX_VALUES), f"{what}.data"))
    if kind == "file":
        data = None if raw.get("bytes") is None else f.bytes("bytes", max_len=MAX_FILE)
        uri = f.opt_str("uri", max_len=MAX_URI)
        if (data is None) == (uri is None):
            raise DecodeError(f"{what}: a file part needs exactly one of bytes and uri")
        return FilePart(
            f.opt_str("name", max_len=MAX_NAME), f.opt_str("mime_type", max_len=MAX_MIME), data, uri
        )
    raise DecodeError(f"{what}.kind: unknown part kind {kind!r}")


def _parts(f: Fields, what: str) -> tuple[Part, ...]:
    items = f.list("parts", max_items=MAX_PARTS)
    return tuple(_part_from_wire(p, f"{what}.parts[{i}]") for i, p in enumerate(items))


def _message_from_wire(obj: Any, what: str = "message") -> Message:
    f, raw = _fields(obj, what)
    role = f.str("role", max_len=8)
    if role not in ROLES:
        raise DecodeError(f"{what}.role: unknown role {role!r}")
    return Message(
        role=role,
        parts=_parts(f, what),
        message_id=f.str("message_id", min_len=1, max_len=MAX_ID),
        context_id=f.opt_str("context_id", max_len=MAX_ID),
        task_id=f.opt_str("task_id", max_len=MAX_ID),
        metadata=plain_map(raw.get("metadata"), f"{what}.metadata"),
    )


def task_state(value: str, what: str) -> TaskState:
    try:
        return TaskState(value)
    except ValueError:
        raise DecodeError(f"{what}: unknown task state {value!r}") from None


def _status_from_wire(obj: Any, what: str) -> TaskStatus:
    f, raw = _fields(obj, what)
    message = raw.get("message")
    return TaskStatus(
        state=task_state(f.str("state", max_len=32), f"{what}.state"),
        message=None if message is None else _message_from_wire(message, f"{what}.message"),
        timestamp=f.float("timestamp", lo=0.0, hi=MAX_TIMESTAMP),
    )


def _artifact_from_wire(obj: Any, what: str = "artifact") -> Artifact:
    f, raw = _fields(obj, what)
    return Artifact(
        artifact_id=f.str("artifact_id", min_len=1, max_len=MAX_ID),
        name=f.opt_str("name", max_len=MAX_NAME),
        parts=_parts(f, what),
        metadata=plain_map(raw.get("metadata"), f"{what}.metadata"),
        description=f.opt_str("description", max_len=MAX_DESCRIPTION),
    )


def _task_from_wire(obj: Any, what: str = "task") -> Task:
    f, raw = _fields(obj, what)
    history = _items(f, raw, "history", MAX_HISTORY)
    artifacts = _items(f, raw, "artifacts", MAX_ARTIFACTS)
    return Task(
        id=f.str("id", min_len=1, max_len=MAX_ID),
        context_id=f.str("context_id", min_len=1, max_len=MAX_ID),
        status=_status_from_wire(raw.get("status"), f"{what}.status"),
        history=tuple(_message_from_wire(m, f"{what}.history[{i}]") for i, m in enumerate(history)),
        artifacts=tuple(
            _artifact_from_wire(a, f"{what}.artifacts[{i}]") for i, a in enumerate(artifacts)
        ),
        metadata=plain_map(raw.get("metadata"), f"{what}.metadata"),
    )


def _status_event_from_wire(obj: Any, what: str = "status_update") -> TaskStatusUpdateEvent:
    f, raw = _fields(obj, what)
    return TaskStatusUpdateEvent(
        task_id=f.str("task_id", min_len=1, max_len=MAX_ID),
        context_id=f.str("context_id", min_len=1, max_len=MAX_ID),
        status=_status_from_wire(raw.get("status"), f"{what}.status"),
        final=f.bool("final"),
        metadata=plain_map(raw.get("metadata"), f"{what}.metadata"),
    )


def _artifact_event_from_wire(obj: Any, what: str = "artifact_update") -> TaskArtifactUpdateEvent:
    f, raw = _fields(obj, what)
    return TaskArtifactUpdateEvent(
        task_id=f.str("task_id", min_len=1, max_len=MAX_ID),
        context_id=f.str("context_id", min_len=1, max_len=MAX_ID),
        artifact=_artifact_from_wire(raw.get("artifact"), f"{what}.artifact"),
        append=f.bool("append"),
        last_chunk=f.bool("last_chunk"),
        metadata=plain_map(raw.get("metadata"), f"{what}.metadata"),
    )


def card_from_wire(obj: Any, what: str = "agent_card") -> AgentCard:
    """Decode an agent card from plain data (e.g. one of a presence announcement's agents)."""
    f, raw = _fields(obj, what)
    skills = []
    for i, item in enumerate(f.list("skills", max_items=MAX_SKILLS)):
        sf, sraw = _fields(item, f"{what}.skills[{i}]")
        skills.append(
            AgentSkill(
                id=sf.str("id", min_len=1, max_len=MAX_ID),
                name=sf.str("name", max_len=MAX_NAME),
                description=sf.str("description", max_len=MAX_DESCRIPTION),
                tags=_strs(sf, sraw, "tags", MAX_TAGS),
                examples=tuple(sf.str_list("examples", max_items=MAX_TAGS, max_len=MAX_DESCRIPTION))
                if sraw.get("examples") is not None
                else (),
                input_modes=_strs(sf, sraw, "input_modes", MAX_TAGS),
                output_modes=_strs(sf, sraw, "output_modes", MAX_TAGS),
            )
        )
    cf = f.fields("capabilities")
    interfaces = []
    for i, item in enumerate(_items(f, raw, "interfaces", MAX_INTERFACES)):
        inf = Fields(item, f"{what}.interfaces[{i}]")
        interfaces.append(
            AgentInterface(
                inf.str("url", max_len=MAX_URI),
                inf.str("binding", max_len=32),
                inf.str("version", max_len=32),
            )
        )
    provider = None
    if raw.get("provider") is not None:
        pf = f.fields("provider")
        provider = AgentProvider(
            pf.str("organization", max_len=MAX_NAME), pf.str("url", max_len=MAX_URI)
        )
    return AgentCard(
        name=f.str("name", max_len=MAX_NAME),
        description=f.str("description", max_len=MAX_DESCRIPTION),
        version=f.str("version", max_len=64),
        skills=tuple(skills),
        capabilities=AgentCapabilities(
            streaming=cf.bool("streaming"),
            push_notifications=cf.bool("push_notifications"),
            extended_agent_card=cf.bool("extended_agent_card"),
        ),
        default_input_modes=_strs(f, raw, "default_input_modes", MAX_TAGS),
        default_output_modes=_strs(f, raw, "default_output_modes", MAX_TAGS),
        supported_interfaces=tuple(interfaces),
        provider=provider,
        documentation_url=f.opt_str("documentation_url", max_len=MAX_URI),
        icon_url=f.opt_str("icon_url", max_len=MAX_URI),
    )


T = TypeVar("T")

_FROM_WIRE: dict[type, Callable[[Any], Any]] = {
    Task: _task_from_wire,
    Message: _message_from_wire,
    AgentCard: card_from_wire,
    Artifact: _artifact_from_wire,
    TaskStatus: lambda obj: _status_from_wire(obj, "status"),
    TaskStatusUpdateEvent: _status_event_from_wire,
    TaskArtifactUpdateEvent: _artifact_event_from_wire,
}


def from_wire(cls: type[T], obj: Any) -> T:
    """Decode plain data (as :func:`to_wire` made it) into a ``cls``; DecodeError if bad."""
    decode = _FROM_WIRE.get(cls)
    if decode is None:
        raise TypeError(f"no wire form for {cls.__name__}")
    return cast(T, decode(obj))


# ---- frames ------------------------------------------------------------------------------------

_OPS: dict[type, str] = {
    SendMessage: "send_message",
    SendStreamingMessage: "send_streaming_message",
    GetTask: "get_task",
    ListTasks: "list_tasks",
    CancelTask: "cancel_task",
    GetAgentCard: "get_agent_card",
}


def _op_body(op: Operation) -> dict[str, Any]:
    if isinstance(op, SendMessage):
        return {
            "message": _message_to_wire(op.message),
            "blocking": op.blocking,
            "history_length": op.history_length,
        }
    if isinstance(op, SendStreamingMessage):
        return {"message": _message_to_wire(op.message)}
    if isinstance(op, GetTask):
        return {"task_id": op.task_id, "history_length": op.history_length}
    if isinstance(op, ListTasks):
        return {
            "context_id": op.context_id,
            "state": None if op.state is None else op.state.value,
            "page_size": op.page_size,
            "history_length": op.history_length,
            "include_artifacts": op.include_artifacts,
        }
    if isinstance(op, CancelTask):
        return {"task_id": op.task_id}
    return {}


def _op_from_wire(name: str, obj: Any) -> Operation:
    what = f"a2a.{name}"
    f, raw = _fields(obj, what)
    if name == "send_message":
        return SendMessage(
            _message_from_wire(raw.get("message"), f"{what}.message"),
            blocking=f.bool("blocking"),
            history_length=_opt_int(f, raw, "history_length", lo=0, hi=MAX_HISTORY),
        )
    if name == "send_streaming_message":
        return SendStreamingMessage(_message_from_wire(raw.get("message"), f"{what}.message"))
    if name == "get_task":
        return GetTask(
            f.str("task_id", min_len=1, max_len=MAX_ID),
            history_length=_opt_int(f, raw, "history_length", lo=0, hi=MAX_HISTORY),
        )
    if name == "list_tasks":
        state = f.opt_str("state", max_len=32)
        return ListTasks(
            context_id=f.opt_str("context_id", max_len=MAX_ID),
            state=None if state is None else task_state(state, f"{what}.state"),
            page_size=f.int("page_size", lo=1, hi=MAX_PAGE_SIZE),
            history_length=_opt_int(f, raw, "history_length", lo=0, hi=MAX_HISTORY),
            include_artifacts=f.bool("include_artifacts"),
        )
    if name == "cancel_task":
        return CancelTask(f.str("task_id", min_len=1, max_len=MAX_ID))
    if name == "get_agent_card":
        return GetAgentCard()
    raise A2AError(METHOD_NOT_FOUND, f"unknown a2a operation {name!r}")


def _header(payload: bytes, what: str) -> tuple[Fields, dict[str, Any], str, str]:
    f, raw = _fields(unpack(payload), what)
    version = f.int("v", hi=2**31)
    if version != WIRE_VERSION:
        raise DecodeError(f"{what}: unsupported version {version}, expected {WIRE_VERSION}")
    return f, raw, f.str("type", max_len=16), f.str("id", min_len=1, max_len=MAX_ID)


def _frame(frame_type: str, request_id: str, **fields: Any) -> bytes:
    return pack({"v": WIRE_VERSION, "type": frame_type, "id": request_id, **fields})


def encode_request(request_id: str, op: Operation) -> bytes:
    return _frame("request", request_id, op=_OPS[type(op)], body=_op_body(op))


def decode_request(payload: bytes) -> tuple[str, Operation]:
    """The request id and operation of a request frame.

    An unknown operation raises :class:`A2AError` (METHOD_NOT_FOUND), so that the answering
    side can still reply with an error frame for that request id.
    """
    f, raw, kind, request_id = _header(payload, "a2a request")
    if kind != "request":
        raise DecodeError(f"a2a request: expected type 'request', got {kind!r}")
    try:
        return request_id, _op_from_wire(f.str("op", max_len=32), raw.get("body"))
    except A2AError as exc:
        exc.request_id = request_id
        raise
    except DecodeError as exc:
        raise A2AError(INVALID_PARAMS, str(exc), request_id=request_id) from None


@dataclass(frozen=True, slots=True)
class Result:
    request_id: str
    value: Task | Message | AgentCard | tuple[Task, ...]


@dataclass(frozen=True, slots=True)
class Event:
    request_id: str
    event: StreamEvent


@dataclass(frozen=True, slots=True)
class ErrorReply:
    request_id: str
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class End:
    request_id: str


Response: TypeAlias = Result | Event | ErrorReply | End


def encode_result(request_id: str, value: Task | Message | AgentCard | tuple[Task, ...]) -> bytes:
    if isinstance(value, tuple):
        return _frame("result", request_id, kind="tasks", body=[_task_to_wire(t) for t in value])
    kind = {Task: "task", Message: "message", AgentCard: "card"}.get(type(value))
    if kind is None:
        raise TypeError(f"not an a2a result: {type(value).__name__}")
    return _frame("result", request_id, kind=kind, body=to_wire(value))


_EVENT_KINDS: dict[type, str] = {
    Task: "task",
    Message: "message",
    TaskStatusUpdateEvent: "status",
    TaskArtifactUpdateEvent: "artifact",
}


def encode_event(request_id: str, event: StreamEvent) -> bytes:
    kind = _EVENT_KINDS.get(type(event))
    if kind is None:
        raise TypeError(f"not an a2a stream event: {type(event).__name__}")
    return _frame("event", request_id, kind=kind, body=to_wire(event))


def encode_error(request_id: str, code: int, message: str) -> bytes:
    return _frame("error", request_id, code=code, message=message[:MAX_ERROR_MESSAGE])


def encode_end(request_id: str) -> bytes:
    return _frame("end", request_id)


def decode_response(payload: bytes) -> Response:
    """Decode a result, event, error or end frame."""
    f, raw, kind, request_id = _header(payload, "a2a response")
    if kind == "result":
        body_kind = f.str("kind", max_len=16)
        body = raw.get("body")
        if body_kind == "tasks":
            items = f.list("body", max_items=MAX_TASKS)
            return Result(
                request_id,
                tuple(_task_from_wire(t, f"a2a result.body[{i}]") for i, t in enumerate(items)),
            )
        decoders: dict[str, Callable[[Any], Task | Message | AgentCard]] = {
            "task": _task_from_wire,
            "message": _message_from_wire,
            "card": card_from_wire,
        }
        if body_kind not in decoders:
            raise DecodeError(f"a2a result: unknown kind {body_kind!r}")
        return Result(request_id, decoders[body_kind](body))
    if kind == "event":
        body_kind = f.str("kind", max_len=16)
        events: dict[str, Callable[[Any], StreamEvent]] = {
            "task": _task_from_wire,
            "message": _message_from_wire,
            "status": _status_event_from_wire,
            "artifact": _artifact_event_from_wire,
        }
        if body_kind not in events:
            raise DecodeError(f"a2a event: unknown kind {body_kind!r}")
        return Event(request_id, events[body_kind](raw.get("body")))
    if kind == "error":
        return ErrorReply(
            request_id,
            f.int("code", lo=-(2**31), hi=2**31 - 1),
            f.str("message", max_len=MAX_ERROR_MESSAGE),
        )
    if kind == "end":
        return End(request_id)
    raise DecodeError(f"a2a response: unknown type {kind!r}")
