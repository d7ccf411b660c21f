"""The A2A v1.0 data model: limits, error codes, parts, messages, tasks, agent cards, operations.

The model is plain frozen dataclasses. Its msgpack form for ``/meshnode/a2a/1.0.0`` is in
:mod:`protocols.a2a.wire` and :mod:`protocols.a2a.frames`; the JSON form for HTTP clients in
:mod:`protocols.a2a.json_encode`, :mod:`protocols.a2a.json_decode` and
:mod:`protocols.a2a.jsonrpc`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, TypeAlias

from protocols.errors import ProtocolError

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
#: meshnode's: a request refused for now, its sender having too much under way (JSON-RPC
#: leaves -32000..-32099 to implementations; 29 as in HTTP 429).
BUSY = -32029

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
