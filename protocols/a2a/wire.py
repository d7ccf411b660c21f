"""The msgpack-able plain-data form of the A2A model (:func:`to_wire`, :func:`from_wire`).

Every decoder bounds sizes, counts and nesting, and raises
:class:`~protocols.errors.DecodeError` and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from protocols.a2a.model import (
    MAX_ARTIFACTS,
    MAX_DESCRIPTION,
    MAX_FILE,
    MAX_HISTORY,
    MAX_ID,
    MAX_INTERFACES,
    MAX_MIME,
    MAX_NAME,
    MAX_PARTS,
    MAX_SKILLS,
    MAX_TAGS,
    MAX_TEXT,
    MAX_TIMESTAMP,
    MAX_URI,
    MAX_VALUES,
    ROLES,
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
    StreamEvent,
    Task,
    TaskArtifactUpdateEvent,
    TaskStatus,
    TaskStatusUpdateEvent,
    TextPart,
)
from protocols.a2a.validation import plain_map, task_state
from protocols.codec import Fields
from protocols.errors import DecodeError

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
