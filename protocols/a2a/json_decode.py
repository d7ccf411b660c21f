"""Decoding of the A2A model from JSON in either dialect (:func:`from_json`).

Every decoder accepts any JSON value and raises :class:`~protocols.errors.DecodeError`,
nothing else. Unknown fields are ignored, as ProtoJSON parsers do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from protocols.a2a.dialects import (
    _ROLES_V1,
    _STATES_V1,
    V03,
    V03_PROTOCOL_VERSION,
    V1,
    Dialect,
    _b64decode,
    _check_dialect,
    _fields,
    _list,
    _opt_bool,
    _str,
    _strs,
    timestamp_from_json,
)
from protocols.a2a.model import (
    JSONRPC,
    MAX_ARTIFACTS,
    MAX_DESCRIPTION,
    MAX_HISTORY,
    MAX_ID,
    MAX_INTERFACES,
    MAX_MIME,
    MAX_NAME,
    MAX_PARTS,
    MAX_SKILLS,
    MAX_TEXT,
    MAX_URI,
    MAX_VALUES,
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentProvider,
    AgentSkill,
    Artifact,
    DataPart,
    FilePart,
    Message,
    Part,
    Role,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
    TextPart,
)
from protocols.a2a.validation import plain_map, task_state
from protocols.codec import Fields
from protocols.errors import DecodeError

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
