"""The JSON forms of the A2A model, and A2A JSON-RPC 2.0 requests, responses and SSE events.

Two dialects, chosen per request by the JSON-RPC method name:

* ``"1.0"`` -- A2A v1.0 as a2a-sdk 1.x speaks it: ProtoJSON of the ``lf.a2a.v1`` messages
  (camelCase names; ``ROLE_USER``; ``TASK_STATE_WORKING``; parts ``{"text"}``, ``{"data"}``,
  ``{"raw": base64}`` or ``{"url"}`` with ``filename``/``mediaType``; RFC 3339 timestamps;
  empty fields omitted). Methods ``SendMessage``, ``SendStreamingMessage``, ``GetTask``,
  ``ListTasks``, ``CancelTask``, ``GetExtendedAgentCard``.
* ``"0.3"`` -- A2A v0.3: ``kind`` discriminators, ``"user"``, ``"working"``, file parts as
  ``{"kind": "file", "file": {"bytes"|"uri", "name", "mimeType"}}``. Methods
  ``message/send``, ``message/stream``, ``tasks/get``, ``tasks/cancel``,
  ``agent/getAuthenticatedExtendedCard``.

Every decoder accepts any JSON value and raises :class:`~protocols.errors.DecodeError` or
:class:`~protocols.a2a.A2AError` (:class:`RpcError` from :func:`parse_rpc`), nothing else.
Unknown fields are ignored, as ProtoJSON parsers do.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeAlias, TypeVar, cast

from protocols.a2a import (
    DEFAULT_PAGE_SIZE,
    ERROR_REASONS,
    INVALID_AGENT_RESPONSE,
    INVALID_PARAMS,
    INVALID_REQUEST,
    JSONRPC,
    MAX_ARTIFACTS,
    MAX_DESCRIPTION,
    MAX_FILE,
    MAX_HISTORY,
    MAX_ID,
    MAX_INTERFACES,
    MAX_MIME,
    MAX_NAME,
    MAX_PAGE_SIZE,
    MAX_PARTS,
    MAX_SKILLS,
    MAX_TAGS,
    MAX_TEXT,
    MAX_URI,
    MAX_VALUES,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    PUSH_NOTIFICATION_NOT_SUPPORTED,
    UNSUPPORTED_OPERATION,
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
    GetAgentCard,
    GetTask,
    ListTasks,
    Message,
    Operation,
    Part,
    Role,
    SendMessage,
    SendStreamingMessage,
    StreamEvent,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
    TextPart,
    apply_history_length,
    check_timestamp,
    encode_request,
    plain_map,
    task_state,
)
from protocols.codec import Fields
from protocols.errors import DecodeError

Dialect: TypeAlias = Literal["1.0", "0.3"]
V1: Final = "1.0"
V03: Final = "0.3"
#: ``protocolVersion`` of the v0.3 compatibility fields of a served agent card.
V03_PROTOCOL_VERSION = "0.3.0"
#: A JSON-RPC request body larger than this is refused (files travel inline, base64).
MAX_RPC_BODY = 1024 * 1024
MAX_METHOD = 128
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
ERROR_DOMAIN = "a2a-protocol.org"

_STATE_NUMBERS: dict[TaskState, int] = {
    TaskState.SUBMITTED: 1,
    TaskState.WORKING: 2,
    TaskState.COMPLETED: 3,
    TaskState.FAILED: 4,
    TaskState.CANCELED: 5,
    TaskState.INPUT_REQUIRED: 6,
    TaskState.REJECTED: 7,
    TaskState.AUTH_REQUIRED: 8,
}
STATE_NAMES_V1: dict[TaskState, str] = {
    s: "TASK_STATE_" + s.value.upper().replace("-", "_") for s in TaskState
}
_STATES_V1: dict[str | int, TaskState] = {
    **{name: s for s, name in STATE_NAMES_V1.items()},
    **{number: s for s, number in _STATE_NUMBERS.items()},
}
ROLE_NAMES_V1: dict[str, str] = {"user": "ROLE_USER", "agent": "ROLE_AGENT"}
_ROLES_V1: dict[str | int, Role] = {
    "ROLE_USER": "user",
    "ROLE_AGENT": "agent",
    1: "user",
    2: "agent",
}

# ---- small helpers -----------------------------------------------------------------------------


def _check_dialect(dialect: str) -> None:
    if dialect not in (V1, V03):
        raise ValueError(f"unknown A2A JSON dialect {dialect!r}")


def _fields(obj: Any, what: str) -> tuple[Fields, dict[str, Any]]:
    f = Fields(obj, what)
    return f, cast(dict[str, Any], obj)


def _opt_bool(f: Fields, raw: dict[str, Any], key: str, default: bool = False) -> bool:
    return default if raw.get(key) is None else f.bool(key)


_INT_TEXT = re.compile(r"-?[0-9]{1,11}")


def _opt_int(raw: dict[str, Any], key: str, what: str, *, lo: int, hi: int) -> int | None:
    """An optional integer; ProtoJSON also allows integers as decimal strings."""
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, str) and _INT_TEXT.fullmatch(value):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"{what}.{key}: expected an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise DecodeError(f"{what}.{key}: {value} outside {lo}..{hi}")
    return value


def _str(f: Fields, raw: dict[str, Any], key: str, max_len: int) -> str:
    """A string that ProtoJSON leaves out when it is empty."""
    return "" if raw.get(key) is None else f.str(key, max_len=max_len)


def _list(f: Fields, raw: dict[str, Any], key: str, max_items: int) -> list[Any]:
    return [] if raw.get(key) is None else f.list(key, max_items=max_items)


def _strs(f: Fields, raw: dict[str, Any], key: str, *, max_len: int = MAX_NAME) -> tuple[str, ...]:
    if raw.get(key) is None:
        return ()
    return tuple(f.str_list(key, max_items=MAX_TAGS, max_len=max_len))


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` unless ``value`` is empty (ProtoJSON omits unset and empty fields)."""
    if value is not None and value != {} and value != [] and value is not False:
        out[key] = value


def timestamp_to_json(ts: float) -> str:
    """RFC 3339 in UTC with a ``Z``, microseconds when not whole (as ProtoJSON writes them)."""
    dt = datetime.fromtimestamp(ts, UTC)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{dt.microsecond:06d}Z" if dt.microsecond else "Z")


def timestamp_from_json(value: Any, what: str) -> float:
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise DecodeError(f"{what}: expected an RFC 3339 timestamp")
    try:
        dt = datetime.fromisoformat(value)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        ts = dt.timestamp()
    except (ValueError, OverflowError, OSError):
        raise DecodeError(f"{what}: {value[:40]!r} is not an RFC 3339 timestamp") from None
    return check_timestamp(ts, what)


def _b64decode(value: Any, what: str) -> bytes:
    """ProtoJSON bytes: standard or URL-safe base64, padding optional."""
    if not isinstance(value, str):
        raise DecodeError(f"{what}: expected base64 text, got {type(value).__name__}")
    if len(value) > (MAX_FILE * 4) // 3 + 4:
        raise DecodeError(f"{what}: file larger than {MAX_FILE} bytes")
    text = value.strip().replace("-", "+").replace("_", "/")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError(f"{what}: invalid base64") from None
    if len(data) > MAX_FILE:
        raise DecodeError(f"{what}: file larger than {MAX_FILE} bytes")
    return data


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ---- encoding ----------------------------------------------------------------------------------


def _part_to_json(part: Part, dialect: Dialect) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"text": part.text} if dialect == V1 else {"kind": "text", "text": part.text}
    if isinstance(part, DataPart):
        return {"data": part.data} if dialect == V1 else {"kind": "data", "data": part.data}
    out: dict[str, Any] = {}
    if dialect == V1:
        if part.data is not None:
            out["raw"] = _b64encode(part.data)
        else:
            out["url"] = part.uri
        _put(out, "filename", part.name)
        _put(out, "mediaType", part.mime_type)
        return out
    if part.data is not None:
        out["bytes"] = _b64encode(part.data)
    else:
        out["uri"] = part.uri
    _put(out, "name", part.name)
    _put(out, "mimeType", part.mime_type)
    return {"kind": "file", "file": out}


def _message_to_json(m: Message, dialect: Dialect) -> dict[str, Any]:
    out: dict[str, Any] = {} if dialect == V1 else {"kind": "message"}
    out["messageId"] = m.message_id
    _put(out, "contextId", m.context_id)
    _put(out, "taskId", m.task_id)
    out["role"] = ROLE_NAMES_V1[m.role] if dialect == V1 else m.role
    out["parts"] = [_part_to_json(p, dialect) for p in m.parts]
    _put(out, "metadata", m.metadata)
    return out


def _status_to_json(s: TaskStatus, dialect: Dialect) -> dict[str, Any]:
    out: dict[str, Any] = {"state": STATE_NAMES_V1[s.state] if dialect == V1 else s.state.value}
    if s.message is not None:
        out["message"] = _message_to_json(s.message, dialect)
    out["timestamp"] = timestamp_to_json(s.timestamp)
    return out


def _artifact_to_json(a: Artifact, dialect: Dialect) -> dict[str, Any]:
    out: dict[str, Any] = {"artifactId": a.artifact_id}
    _put(out, "name", a.name)
    _put(out, "description", a.description)
    out["parts"] = [_part_to_json(p, dialect) for p in a.parts]
    _put(out, "metadata", a.metadata)
    return out


def _task_to_json(t: Task, dialect: Dialect) -> dict[str, Any]:
    out: dict[str, Any] = {} if dialect == V1 else {"kind": "task"}
    out.update(id=t.id, contextId=t.context_id, status=_status_to_json(t.status, dialect))
    _put(out, "artifacts", [_artifact_to_json(a, dialect) for a in t.artifacts])
    _put(out, "history", [_message_to_json(m, dialect) for m in t.history])
    _put(out, "metadata", t.metadata)
    return out


def _status_event_to_json(e: TaskStatusUpdateEvent, dialect: Dialect) -> dict[str, Any]:
    out: dict[str, Any] = {} if dialect == V1 else {"kind": "status-update"}
    out.update(taskId=e.task_id, contextId=e.context_id, status=_status_to_json(e.status, dialect))
    if dialect == V03:
        out["final"] = e.final
    _put(out, "metadata", e.metadata)
    return out


def _artifact_event_to_json(e: TaskArtifactUpdateEvent, dialect: Dialect) -> dict[str, Any]:
    out: dict[str, Any] = {} if dialect == V1 else {"kind": "artifact-update"}
    out.update(
        taskId=e.task_id, contextId=e.context_id, artifact=_artifact_to_json(e.artifact, dialect)
    )
    if dialect == V1:
        _put(out, "append", e.append)
        _put(out, "lastChunk", e.last_chunk)
    else:
        out.update(append=e.append, lastChunk=e.last_chunk)
    _put(out, "metadata", e.metadata)
    return out


def _skill_to_json(s: AgentSkill) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "tags": list(s.tags),
    }
    _put(out, "examples", list(s.examples))
    _put(out, "inputModes", list(s.input_modes))
    _put(out, "outputModes", list(s.output_modes))
    return out


def _is_v03(interface: AgentInterface) -> bool:
    return interface.protocol_version.startswith("0.")


def _card_to_json(card: AgentCard, dialect: Dialect) -> dict[str, Any]:
    out: dict[str, Any] = {"name": card.name, "description": card.description}
    caps: dict[str, Any] = {
        "streaming": card.capabilities.streaming,
        "pushNotifications": card.capabilities.push_notifications,
    }
    if dialect == V1:
        out["supportedInterfaces"] = [
            {
                "url": i.url,
                "protocolBinding": i.protocol_binding,
                "protocolVersion": i.protocol_version,
            }
            for i in card.supported_interfaces
        ]
        caps["extendedAgentCard"] = card.capabilities.extended_agent_card
    else:
        legacy = [i for i in card.supported_interfaces if _is_v03(i)] or list(
            card.supported_interfaces
        )
        main = legacy[0] if legacy else AgentInterface("", JSONRPC, V03_PROTOCOL_VERSION)
        out.update(url=main.url, preferredTransport=main.protocol_binding)
        out["protocolVersion"] = main.protocol_version if _is_v03(main) else V03_PROTOCOL_VERSION
        _put(
            out,
            "additionalInterfaces",
            [{"url": i.url, "transport": i.protocol_binding} for i in legacy[1:]],
        )
        _put(out, "supportsAuthenticatedExtendedCard", card.capabilities.extended_agent_card)
    if card.provider is not None:
        out["provider"] = {"organization": card.provider.organization, "url": card.provider.url}
    out["version"] = card.version
    _put(out, "documentationUrl", card.documentation_url)
    out["capabilities"] = caps
    out["defaultInputModes"] = list(card.default_input_modes)
    out["defaultOutputModes"] = list(card.default_output_modes)
    out["skills"] = [_skill_to_json(s) for s in card.skills]
    _put(out, "iconUrl", card.icon_url)
    return out


_TO_JSON: dict[type, Callable[[Any, Dialect], dict[str, Any]]] = {
    TextPart: _part_to_json,
    DataPart: _part_to_json,
    FilePart: _part_to_json,
    Message: _message_to_json,
    TaskStatus: _status_to_json,
    Artifact: _artifact_to_json,
    Task: _task_to_json,
    TaskStatusUpdateEvent: _status_event_to_json,
    TaskArtifactUpdateEvent: _artifact_event_to_json,
    AgentSkill: lambda s, _: _skill_to_json(s),
    AgentCard: _card_to_json,
}


def to_json(obj: object, dialect: Dialect = V1) -> dict[str, Any]:
    """The JSON object of ``obj`` (any model type) in ``dialect``."""
    _check_dialect(dialect)
    encode = _TO_JSON.get(type(obj))
    if encode is None:
        raise TypeError(f"no A2A JSON form for {type(obj).__name__}")
    return encode(obj, dialect)


def card_document(card: AgentCard) -> dict[str, Any]:
    """The agent card as served at ``/.well-known/agent-card.json``: the v1.0 card plus the
    v0.3 fields (``url``, ``preferredTransport``, ``protocolVersion``...) that v0.3 clients
    read and v1.0 clients ignore -- the same merged form a2a-sdk's own server serves."""
    document = _card_to_json(card, V1)
    for key, value in _card_to_json(card, V03).items():
        document.setdefault(key, value)
    return document


# ---- decoding ----------------------------------------------------------------------------------


def _part_from_json(obj: Any, what: str, dialect: Dialect) -> Part:
    f, raw = _fields(obj, what)
    if dialect == V03:
        kind = f.str("kind", max_len=16)
        if kind == "text":
            return TextPart(f.str("text", max_len=MAX_TEXT))
        if kind == "data":
            return DataPart(plain_map(f.map("data", max_items=MAX_VALUES), f"{what}.data"))
        if kind != "file":
            raise DecodeError(f"{what}.kind: unknown part kind {kind!r}")
        ff, fraw = _fields(raw.get("file"), f"{what}.file")
        data_key, uri_key, name_key, mime_key = "bytes", "uri", "name", "mimeType"
    else:
        present = [k for k in ("text", "raw", "url", "data") if raw.get(k) is not None]
        if len(present) != 1:
            raise DecodeError(f"{what}: a part has exactly one of text, raw, url and data")
        if present == ["text"]:
            return TextPart(f.str("text", max_len=MAX_TEXT))
        if present == ["data"]:
            return DataPart(plain_map(raw["data"], f"{what}.data"))
        ff, fraw = f, raw
        data_key, uri_key, name_key, mime_key = "raw", "url", "filename", "mediaType"
    data = None if fraw.get(data_key) is None else _b64decode(fraw[data_key], f"{what}.{data_key}")
    uri = ff.opt_str(uri_key, max_len=MAX_URI)
    if (data is None) == (uri is None):
        raise DecodeError(f"{what}: a file part has exactly one of {data_key} and {uri_key}")
    name = ff.opt_str(name_key, max_len=MAX_NAME) or None
    return FilePart(name, ff.opt_str(mime_key, max_len=MAX_MIME) or None, data, uri)


def _parts(f: Fields, raw: dict[str, Any], what: str, dialect: Dialect) -> tuple[Part, ...]:
    # ProtoJSON leaves out an empty list, so a missing "parts" is no parts.
    items = _list(f, raw, "parts", MAX_PARTS)
    return tuple(_part_from_json(p, f"{what}.parts[{i}]", dialect) for i, p in enumerate(items))


def _role(value: Any, what: str, dialect: Dialect) -> Role:
    if dialect == V03:
        if value == "user" or value == "agent":
            return cast(Role, value)
    elif isinstance(value, str | int) and not isinstance(value, bool) and value in _ROLES_V1:
        return _ROLES_V1[value]
    raise DecodeError(f"{what}: unknown role {str(value)[:32]!r}")


def _state(value: Any, what: str, dialect: Dialect) -> TaskState:
    if dialect == V03:
        if isinstance(value, str) and len(value) <= 32:
            return task_state(value, what)
    elif isinstance(value, str | int) and not isinstance(value, bool) and value in _STATES_V1:
        return _STATES_V1[value]
    raise DecodeError(f"{what}: unknown task state {str(value)[:40]!r}")


def _opt_id(f: Fields, key: str) -> str | None:
    return f.opt_str(key, max_len=MAX_ID) or None


def _message_from_json(obj: Any, what: str, dialect: Dialect) -> Message:
    f, raw = _fields(obj, what)
    return Message(
        role=_role(raw.get("role"), f"{what}.role", dialect),
        parts=_parts(f, raw, what, dialect),
        message_id=f.str("messageId", min_len=1, max_len=MAX_ID),
        context_id=_opt_id(f, "contextId"),
        task_id=_opt_id(f, "taskId"),
        metadata=plain_map(raw.get("metadata"), f"{what}.metadata"),
    )


def _status_from_json(obj: Any, what: str, dialect: Dialect) -> TaskStatus:
    _, raw = _fields(obj, what)
    message = raw.get("message")
    timestamp = raw.get("timestamp")
    return TaskStatus(
        state=_state(raw.get("state"), f"{what}.state", dialect),
        message=None
        if message is None
        else _message_from_json(message, f"{what}.message", dialect),
        timestamp=0.0 if timestamp is None else timestamp_from_json(timestamp, f"{what}.timestamp"),
    )


def _artifact_from_json(obj: Any, what: str, dialect: Dialect) -> Artifact:
    f, raw = _fields(obj, what)
    return Artifact(
        artifact_id=f.str("artifactId", min_len=1, max_len=MAX_ID),
        name=f.opt_str("name", max_len=MAX_NAME) or None,
        parts=_parts(f, raw, what, dialect),
        metadata=plain_map(raw.get("metadata"), f"{what}.metadata"),
        description=f.opt_str("description", max_len=MAX_DESCRIPTION) or None,
    )


def _task_from_json(obj: Any, what: str, dialect: Dialect) -> Task:
    f, raw = _fields(obj, what)
    history = _list(f, raw, "history", MAX_HISTORY)
    artifacts = _list(f, raw, "artifacts", MAX_ARTIFACTS)
    return Task(
        id=f.str("id", min_len=1, max_len=MAX_ID),
        context_id=f.str("contextId", min_len=1, max_len=MAX_ID),
        status=_status_from_json(raw.get("status"), f"{what}.status", dialect),
        history=tuple(
            _message_from_json(m, f"{what}.history[{i}]", dialect) for i, m in enumerate(history)
        ),
        artifacts=tuple(
            _artifact_from_json(a, f"{what}.artifacts[{i}]", dialect)
            for i, a in enumerate(artifacts)
        ),
        metadata=plain_map(raw.get("metadata"), f"{what}.metadata"),
    )


def _status_event_from_json(obj: Any, what: str, dialect: Dialect) -> TaskStatusUpdateEvent:
    f, raw = _fields(obj, what)
    status = _status_from_json(raw.get("status"), f"{what}.status", dialect)
    # v1.0 has no "final": a stream ends at a terminal or interrupted state.
    final = f.bool("final") if dialect == V03 else status.state.value in _FINAL_STATES
    return TaskStatusUpdateEvent(
        task_id=f.str("taskId", min_len=1, max_len=MAX_ID),
        context_id=f.str("contextId", min_len=1, max_len=MAX_ID),
        status=status,
        final=final,
        metadata=plain_map(raw.get("metadata"), f"{what}.metadata"),
    )


_FINAL_STATES = frozenset(
    s.value
    for s in (
        TaskState.COMPLETED,
        TaskState.FAILED,
        TaskState.CANCELED,
        TaskState.REJECTED,
        TaskState.INPUT_REQUIRED,
        TaskState.AUTH_REQUIRED,
    )
)


def _artifact_event_from_json(obj: Any, what: str, dialect: Dialect) -> TaskArtifactUpdateEvent:
    f, raw = _fields(obj, what)
    return TaskArtifactUpdateEvent(
        task_id=f.str("taskId", min_len=1, max_len=MAX_ID),
        context_id=f.str("contextId", min_len=1, max_len=MAX_ID),
        artifact=_artifact_from_json(raw.get("artifact"), f"{what}.artifact", dialect),
        append=_opt_bool(f, raw, "append"),
        last_chunk=_opt_bool(f, raw, "lastChunk"),
        metadata=plain_map(raw.get("metadata"), f"{what}.metadata"),
    )


def _skill_from_json(obj: Any, what: str) -> AgentSkill:
    f, raw = _fields(obj, what)
    return AgentSkill(
        id=f.str("id", min_len=1, max_len=MAX_ID),
        name=_str(f, raw, "name", MAX_NAME),
        description=_str(f, raw, "description", MAX_DESCRIPTION),
        tags=_strs(f, raw, "tags"),
        examples=_strs(f, raw, "examples", max_len=MAX_DESCRIPTION),
        input_modes=_strs(f, raw, "inputModes"),
        output_modes=_strs(f, raw, "outputModes"),
    )


def _interfaces_from_json(
    f: Fields, raw: dict[str, Any], what: str, dialect: Dialect
) -> tuple[AgentInterface, ...]:
    if dialect == V1 and raw.get("supportedInterfaces") is not None:
        out = []
        for i, item in enumerate(f.list("supportedInterfaces", max_items=MAX_INTERFACES)):
            inf = Fields(item, f"{what}.supportedInterfaces[{i}]")
            out.append(
                AgentInterface(
                    inf.str("url", max_len=MAX_URI),
                    inf.opt_str("protocolBinding", max_len=32) or JSONRPC,
                    inf.opt_str("protocolVersion", max_len=32) or "",
                )
            )
        return tuple(out)
    # A v0.3 card (or the v0.3 fields of a merged one): url + preferredTransport.
    url = f.opt_str("url", max_len=MAX_URI)
    if not url:
        return ()
    version = f.opt_str("protocolVersion", max_len=32) or V03_PROTOCOL_VERSION
    interfaces = [
        AgentInterface(url, f.opt_str("preferredTransport", max_len=32) or JSONRPC, version)
    ]
    for i, item in enumerate(_list(f, raw, "additionalInterfaces", MAX_INTERFACES - 1)):
        inf = Fields(item, f"{what}.additionalInterfaces[{i}]")
        interfaces.append(
            AgentInterface(
                inf.str("url", max_len=MAX_URI), inf.str("transport", max_len=32), version
            )
        )
    return tuple(interfaces)


def _card_from_json(obj: Any, what: str, dialect: Dialect) -> AgentCard:
    f, raw = _fields(obj, what)
    caps = raw.get("capabilities")
    cf, craw = _fields({} if caps is None else caps, f"{what}.capabilities")
    provider = None
    if raw.get("provider") is not None:
        pf = f.fields("provider")
        praw = cast(dict[str, Any], raw["provider"])
        provider = AgentProvider(
            _str(pf, praw, "organization", MAX_NAME), _str(pf, praw, "url", MAX_URI)
        )
    if dialect == V1:
        extended = _opt_bool(cf, craw, "extendedAgentCard")
    else:
        extended = _opt_bool(f, raw, "supportsAuthenticatedExtendedCard")
    return AgentCard(
        name=_str(f, raw, "name", MAX_NAME),
        description=_str(f, raw, "description", MAX_DESCRIPTION),
        version=_str(f, raw, "version", 64),
        skills=tuple(
            _skill_from_json(s, f"{what}.skills[{i}]")
            for i, s in enumerate(_list(f, raw, "skills", MAX_SKILLS))
        ),
        capabilities=AgentCapabilities(
            streaming=_opt_bool(cf, craw, "streaming"),
            push_notifications=_opt_bool(cf, craw, "pushNotifications"),
            extended_agent_card=extended,
        ),
        default_input_modes=_strs(f, raw, "defaultInputModes"),
        default_output_modes=_strs(f, raw, "defaultOutputModes"),
        supported_interfaces=_interfaces_from_json(f, raw, what, dialect),
        provider=provider,
        documentation_url=f.opt_str("documentationUrl", max_len=MAX_URI) or None,
        icon_url=f.opt_str("iconUrl", max_len=MAX_URI) or None,
    )


T = TypeVar("T")

_FROM_JSON: dict[type, Callable[[Any, str, Dialect], Any]] = {
    TextPart: _part_from_json,
    DataPart: _part_from_json,
    FilePart: _part_from_json,
    Message: _message_from_json,
    TaskStatus: _status_from_json,
    Artifact: _artifact_from_json,
    Task: _task_from_json,
    TaskStatusUpdateEvent: _status_event_from_json,
    TaskArtifactUpdateEvent: _artifact_event_from_json,
    AgentSkill: lambda obj, what, _: _skill_from_json(obj, what),
    AgentCard: _card_from_json,
}


def from_json(cls: type[T], obj: Any, dialect: Dialect = V1) -> T:
    """Decode a JSON object (already parsed) into a ``cls``; DecodeError if it is not one.

    For the part classes, any part is accepted and returned (its type says which it is);
    a v1.0 ``AgentCard`` without ``supportedInterfaces`` falls back to the v0.3 ``url``.
    """
    _check_dialect(dialect)
    decode = _FROM_JSON.get(cls)
    if decode is None:
        raise TypeError(f"no A2A JSON form for {cls.__name__}")
    return cast(T, decode(obj, cls.__name__, dialect))


# ---- JSON-RPC ----------------------------------------------------------------------------------

RequestId: TypeAlias = str | int | None


class RpcError(A2AError):
    """A JSON-RPC request that cannot be served; ``to_response()`` is the error reply."""

    def __init__(
        self, code: int, message: str, *, request_id: RequestId = None, dialect: Dialect = V1
    ) -> None:
        super().__init__(code, message, request_id=request_id)
        self.dialect: Dialect = dialect

    def to_response(self) -> dict[str, Any]:
        return rpc_error(self.request_id, self.code, self.message, self.dialect)


@dataclass(frozen=True, slots=True)
class RpcCall:
    """A parsed A2A JSON-RPC request."""

    id: RequestId
    method: str
    dialect: Dialect
    op: Operation

    @property
    def streaming(self) -> bool:
        return isinstance(self.op, SendStreamingMessage)


def _send_config(raw: dict[str, Any], what: str, dialect: Dialect) -> tuple[bool, int | None]:
    """(blocking, history_length) of a send request's configuration."""
    config = raw.get("configuration")
    if config is None:
        return True, None
    cf, craw = _fields(config, f"{what}.configuration")
    push_key = "taskPushNotificationConfig" if dialect == V1 else "pushNotificationConfig"
    if craw.get(push_key) is not None:
        raise A2AError(PUSH_NOTIFICATION_NOT_SUPPORTED, "push notifications are not supported")
    history = _opt_int(craw, "historyLength", f"{what}.configuration", lo=0, hi=2**31 - 1)
    if dialect == V1:
        blocking = not _opt_bool(cf, craw, "returnImmediately")
    else:
        blocking = _opt_bool(cf, craw, "blocking", default=True)
    return blocking, None if history is None else min(history, MAX_HISTORY)


def _history_length(raw: dict[str, Any], what: str) -> int | None:
    value = _opt_int(raw, "historyLength", what, lo=0, hi=2**31 - 1)
    return None if value is None else min(value, MAX_HISTORY)


def _send(params: dict[str, Any], dialect: Dialect) -> SendMessage:
    message = _message_from_json(params.get("message"), "params.message", dialect)
    blocking, history = _send_config(params, "params", dialect)
    return SendMessage(message, blocking=blocking, history_length=history)


def _stream(params: dict[str, Any], dialect: Dialect) -> SendStreamingMessage:
    return SendStreamingMessage(_send(params, dialect).message)


def _get_task(params: dict[str, Any], dialect: Dialect) -> GetTask:
    f = Fields(params, "params")
    return GetTask(f.str("id", min_len=1, max_len=MAX_ID), _history_length(params, "params"))


def _cancel_task(params: dict[str, Any], dialect: Dialect) -> CancelTask:
    return CancelTask(Fields(params, "params").str("id", min_len=1, max_len=MAX_ID))


def _list_tasks(params: dict[str, Any], dialect: Dialect) -> ListTasks:
    f = Fields(params, "params")
    status = params.get("status")
    state = None
    if status is not None and status not in ("TASK_STATE_UNSPECIFIED", 0):
        state = _state(status, "params.status", dialect)
    page_size = _opt_int(params, "pageSize", "params", lo=-(2**31), hi=2**31 - 1)
    if page_size is not None and not 1 <= page_size <= MAX_PAGE_SIZE:
        raise DecodeError(f"params.pageSize: must be between 1 and {MAX_PAGE_SIZE}")
    if f.opt_str("pageToken", max_len=MAX_ID):
        raise DecodeError("params.pageToken: unknown page token (all tasks fit one page)")
    return ListTasks(
        context_id=_opt_id(f, "contextId"),
        state=state,
        page_size=DEFAULT_PAGE_SIZE if page_size is None else page_size,
        history_length=_history_length(params, "params"),
        include_artifacts=_opt_bool(f, params, "includeArtifacts"),
    )


def _card(params: dict[str, Any], dialect: Dialect) -> GetAgentCard:
    return GetAgentCard()


_PARSERS: dict[str, tuple[Dialect, Callable[[dict[str, Any], Dialect], Operation]]] = {
    "SendMessage": (V1, _send),
    "SendStreamingMessage": (V1, _stream),
    "GetTask": (V1, _get_task),
    "ListTasks": (V1, _list_tasks),
    "CancelTask": (V1, _cancel_task),
    "GetExtendedAgentCard": (V1, _card),
    "message/send": (V03, _send),
    "message/stream": (V03, _stream),
    "tasks/get": (V03, _get_task),
    "tasks/cancel": (V03, _cancel_task),
    "agent/getAuthenticatedExtendedCard": (V03, _card),
}
#: Methods of the spec that this server knows but does not offer, and the error they get.
_UNSUPPORTED: dict[str, tuple[Dialect, int]] = {
    "SubscribeToTask": (V1, UNSUPPORTED_OPERATION),
    "CreateTaskPushNotificationConfig": (V1, PUSH_NOTIFICATION_NOT_SUPPORTED),
    "GetTaskPushNotificationConfig": (V1, PUSH_NOTIFICATION_NOT_SUPPORTED),
    "ListTaskPushNotificationConfigs": (V1, PUSH_NOTIFICATION_NOT_SUPPORTED),
    "DeleteTaskPushNotificationConfig": (V1, PUSH_NOTIFICATION_NOT_SUPPORTED),
    "tasks/resubscribe": (V03, UNSUPPORTED_OPERATION),
    "tasks/pushNotificationConfig/set": (V03, PUSH_NOTIFICATION_NOT_SUPPORTED),
    "tasks/pushNotificationConfig/get": (V03, PUSH_NOTIFICATION_NOT_SUPPORTED),
    "tasks/pushNotificationConfig/list": (V03, PUSH_NOTIFICATION_NOT_SUPPORTED),
    "tasks/pushNotificationConfig/delete": (V03, PUSH_NOTIFICATION_NOT_SUPPORTED),
}
METHODS: frozenset[str] = frozenset(_PARSERS)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _valid_id(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return len(value) <= MAX_ID
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


def parse_rpc(body: bytes | str) -> RpcCall:
    """Parse and validate one A2A JSON-RPC 2.0 request; :class:`RpcError` if it cannot be
    served (with the JSON-RPC code, and the request id and dialect when they are known)."""
    if len(body) > MAX_RPC_BODY:
        raise RpcError(INVALID_REQUEST, f"payload too large (limit {MAX_RPC_BODY} bytes)")
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise RpcError(PARSE_ERROR, "the request body is not valid JSON") from None
    if isinstance(data, list):
        raise RpcError(INVALID_REQUEST, "batch requests are not supported")
    if not isinstance(data, dict):
        raise RpcError(INVALID_REQUEST, "a JSON-RPC request must be an object")
    request_id = data.get("id")
    if not _valid_id(request_id):
        raise RpcError(INVALID_REQUEST, "id must be a string, an integer or null")
    method = data.get("method")
    if not isinstance(method, str) or not 0 < len(method) <= MAX_METHOD:
        raise RpcError(INVALID_REQUEST, "method must be a non-empty string", request_id=request_id)
    dialect: Dialect = V03 if "/" in method else V1
    if data.get("jsonrpc") != "2.0":
        raise RpcError(
            INVALID_REQUEST, "jsonrpc must be exactly '2.0'", request_id=request_id, dialect=dialect
        )
    if method in _UNSUPPORTED:
        dialect, code = _UNSUPPORTED[method]
        raise RpcError(code, f"{method} is not supported", request_id=request_id, dialect=dialect)
    if method not in _PARSERS:
        raise RpcError(
            METHOD_NOT_FOUND, f"unknown method {method!r}", request_id=request_id, dialect=dialect
        )
    dialect, parse = _PARSERS[method]
    params = data.get("params")
    if params is None:
        params = {}
    try:
        if not isinstance(params, dict):
            raise DecodeError("params must be an object")
        op = parse(params, dialect)
    except A2AError as exc:
        raise RpcError(exc.code, exc.message, request_id=request_id, dialect=dialect) from None
    except DecodeError as exc:
        raise RpcError(INVALID_PARAMS, str(exc), request_id=request_id, dialect=dialect) from None
    try:
        # JSON can spell lone surrogates ("\ud800") that are not text and that no msgpack
        # frame can carry: whatever is accepted here must be able to cross the mesh.
        encode_request("check", op)
    except ValueError:
        raise RpcError(
            INVALID_PARAMS, "strings must be valid Unicode", request_id=request_id, dialect=dialect
        ) from None
    return RpcCall(request_id, method, dialect, op)


_V1_METHOD_OF: dict[type, str] = {
    SendMessage: "SendMessage",
    SendStreamingMessage: "SendStreamingMessage",
    GetTask: "GetTask",
    ListTasks: "ListTasks",
    CancelTask: "CancelTask",
    GetAgentCard: "GetExtendedAgentCard",
}
_V03_METHOD_OF: dict[type, str] = {
    SendMessage: "message/send",
    SendStreamingMessage: "message/stream",
    GetTask: "tasks/get",
    CancelTask: "tasks/cancel",
    GetAgentCard: "agent/getAuthenticatedExtendedCard",
}


def rpc_request(request_id: RequestId, op: Operation, dialect: Dialect = V1) -> dict[str, Any]:
    """The JSON-RPC request of ``op`` (what a client sends); ValueError if ``dialect`` has no
    method for it (v0.3 has no ListTasks)."""
    _check_dialect(dialect)
    method = (_V1_METHOD_OF if dialect == V1 else _V03_METHOD_OF).get(type(op))
    if method is None:
        raise ValueError(f"A2A {dialect} has no method for {type(op).__name__}")
    params: dict[str, Any] = {}
    if isinstance(op, SendMessage | SendStreamingMessage):
        params["message"] = _message_to_json(op.message, dialect)
        config: dict[str, Any] = {}
        if isinstance(op, SendMessage):
            if dialect == V1:
                _put(config, "returnImmediately", not op.blocking)
            else:
                config["blocking"] = op.blocking
            _put(config, "historyLength", op.history_length)
        _put(params, "configuration", config)
    elif isinstance(op, GetTask | CancelTask):
        params["id"] = op.task_id
        if isinstance(op, GetTask) and op.history_length is not None:
            params["historyLength"] = op.history_length
    elif isinstance(op, ListTasks):
        _put(params, "contextId", op.context_id)
        if op.state is not None:
            params["status"] = STATE_NAMES_V1[op.state]
        params["pageSize"] = op.page_size
        if op.history_length is not None:
            params["historyLength"] = op.history_length
        _put(params, "includeArtifacts", op.include_artifacts)
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def rpc_error(
    request_id: RequestId, code: int, message: str, dialect: Dialect = V1
) -> dict[str, Any]:
    """A JSON-RPC error response; v1.0 errors carry a ``google.rpc.ErrorInfo`` like
    a2a-sdk's server sends (the client reads the code; the details are informative)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if dialect == V1:
        reason = ERROR_REASONS.get(code, "UNKNOWN_ERROR")
        error["data"] = [
            {"@type": ERROR_INFO_TYPE, "reason": reason, "domain": ERROR_DOMAIN, "metadata": {}}
        ]
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def _bad_response(op: Operation, value: object) -> A2AError:
    return A2AError(
        INVALID_AGENT_RESPONSE,
        f"the agent answered {type(op).__name__} with {type(value).__name__}",
    )


def rpc_result(call: RpcCall, value: object) -> dict[str, Any]:
    """The JSON-RPC success response of ``call`` answered by ``value``.

    Applies the request's history length (and ListTasks' page size and includeArtifacts)
    whatever the handler did; A2AError(INVALID_AGENT_RESPONSE) if ``value`` has the wrong
    type for the operation.
    """
    op, dialect = call.op, call.dialect
    result: dict[str, Any]
    if isinstance(op, SendMessage):
        if isinstance(value, Task):
            value = apply_history_length(value, op.history_length)
        elif not isinstance(value, Message):
            raise _bad_response(op, value)
        result = to_json(value, dialect)
        if dialect == V1:
            result = {"task" if isinstance(value, Task) else "message": result}
    elif isinstance(op, GetTask | CancelTask):
        if not isinstance(value, Task):
            raise _bad_response(op, value)
        history = op.history_length if isinstance(op, GetTask) else None
        result = to_json(apply_history_length(value, history), dialect)
    elif isinstance(op, ListTasks):
        if not (isinstance(value, tuple | list) and all(isinstance(t, Task) for t in value)):
            raise _bad_response(op, value)
        tasks = [apply_history_length(t, op.history_length) for t in value][: op.page_size]
        if not op.include_artifacts:
            tasks = [replace(t, artifacts=()) for t in tasks]
        result = {
            "tasks": [to_json(t, dialect) for t in tasks],
            "nextPageToken": "",
            "pageSize": op.page_size,
            "totalSize": len(tasks),
        }
    elif isinstance(op, GetAgentCard):
        if not isinstance(value, AgentCard):
            raise _bad_response(op, value)
        result = to_json(value, dialect)
    else:
        raise _bad_response(op, value)
    return {"jsonrpc": "2.0", "id": call.id, "result": result}


_V1_EVENT_KEYS: dict[type, str] = {
    Task: "task",
    Message: "message",
    TaskStatusUpdateEvent: "statusUpdate",
    TaskArtifactUpdateEvent: "artifactUpdate",
}


def rpc_event(call: RpcCall, event: StreamEvent) -> dict[str, Any]:
    """One streamed JSON-RPC response: v1.0 wraps the event in a ``StreamResponse``
    (``{"statusUpdate": ...}``), v0.3 sends the event itself (with its ``kind``)."""
    key = _V1_EVENT_KEYS.get(type(event))
    if key is None:
        raise A2AError(INVALID_AGENT_RESPONSE, f"not an A2A stream event: {type(event).__name__}")
    body = to_json(event, call.dialect)
    return {"jsonrpc": "2.0", "id": call.id, "result": {key: body} if call.dialect == V1 else body}


def sse_frame(payload: dict[str, Any], *, event: str | None = None) -> bytes:
    """One Server-Sent Event carrying ``payload`` as JSON on a single ``data:`` line."""
    data = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data}\n\n".encode()


def final_state(state: TaskState) -> bool:
    """Whether a stream ends at ``state`` (terminal, or waiting for the client)."""
    return state.value in _FINAL_STATES
