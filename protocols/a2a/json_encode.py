"""The JSON objects of the A2A model in either dialect (:func:`to_json`), and the agent card
as served over HTTP (:func:`card_document`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from protocols.a2a.dialects import (
    ROLE_NAMES_V1,
    STATE_NAMES_V1,
    V03,
    V03_PROTOCOL_VERSION,
    V1,
    Dialect,
    _b64encode,
    _check_dialect,
    _put,
    timestamp_to_json,
)
from protocols.a2a.model import (
    JSONRPC,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Artifact,
    DataPart,
    FilePart,
    Message,
    Part,
    Task,
    TaskArtifactUpdateEvent,
    TaskStatus,
    TaskStatusUpdateEvent,
    TextPart,
)

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
