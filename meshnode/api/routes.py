"""The local API's routes: node status and peers, gossip diagnostics, memory and agents.

Handlers raise what the services raise: the app answers each error with the status
:func:`meshnode.errors.http_status` gives it, so no route converts errors itself.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from meshnode import __version__
from meshnode.a2a.lifecycle import TaskStore
from meshnode.a2a.tasks import AGENT_KEY
from meshnode.api.app import ApiApp, HttpError, Request, StreamingResponse
from meshnode.api.mesh_agent import TIMEOUT_KEY, MeshA2A
from meshnode.ask.asker import Asker
from meshnode.config import NodeConfig
from meshnode.node.faults import Faults
from meshnode.node.knowledge import KnowledgeService, NewRecord
from meshnode.node.limits import PeerLimits
from meshnode.node.membership import Membership
from meshnode.trust.service import TrustService
from protocols.a2a import (
    DataPart,
    Message,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatusUpdateEvent,
    TextPart,
)
from protocols.errors import ProtocolError
from protocols.records import COLLECTIONS, record_from_json, record_to_json

MAX_IMPORT_BATCH = 1000
#: Records one POST /v1/memory/records may add.
MAX_ADD_BATCH = 1000


def add_node_routes(
    app: ApiApp, config: NodeConfig, membership: Membership, uptime: Callable[[], float],
    api_url: Callable[[], str], faults: Faults, *, limits: PeerLimits, tasks: TaskStore,
    reach: Callable[[], dict[str, Any]] = dict, connections: Callable[[], dict[str, str]] = dict,
    memory: Callable[[], str] | None = None,
) -> None:
    """``reach``: how the node is reachable (LAN discovery, NAT, relays), for /v1/status;
    ``connections``: peer ID -> "direct" or "relayed", for /v1/peers; ``memory``: the memory
    store's state ("opening" while Milvus Lite starts: memory calls wait for it)."""
    async def status(_: Request) -> dict[str, Any]:
        return {
            "peer_id": membership.signer.peer_id,
            "network_id": config.network_id,
            "private": bool(config.network_secret),
            "version": __version__,
            "listen_addrs": membership.host.listen_addrs(),
            "connected_peers": len(membership.verified_connected()),
            "gossip_only_peers": len(membership.gate.gossip_only),
            "known_peers": len(membership.table),
            # Lifeguard's local health score: 0 healthy, up to 8 (this node is starved).
            "health": membership.detector.health.score,
            "uptime_s": round(uptime(), 1),
            "bootstrap": list(config.bootstrap),
            "api": api_url(),
            "handshakes": dict(membership.handshakes),
            "dials": dict(membership.dials),
            "faults": faults.counts(),
            # Work refused by the per-peer budgets, by reason.
            "refused": dict(sorted(limits.refused.items())),
            "tasks": tasks.usage(),
            **({"memory": memory()} if memory else {}),
            **reach(),
        }

    async def peers(_: Request) -> list[dict[str, Any]]:
        kinds = connections()
        listed = membership.peers_json()
        for peer in listed:
            peer["refused"] = limits.refused_by(peer["peer_id"])
            peer["connection"] = kinds.get(peer["peer_id"])
        return listed

    async def gossip(request: Request) -> dict[str, Any]:
        return membership.gossip_json(_number(request, "since", 0.0))

    app.route("GET", "/v1/status", status)
    app.route("GET", "/v1/peers", peers)
    app.route("GET", "/v1/gossip", gossip)


def _number(request: Request, name: str, default: float) -> float:
    try:
        return float(request.arg(name) or default)
    except ValueError:
        raise HttpError(400, f"{name} must be a number") from None


def _text_field(body: dict[str, Any], name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or (default is None and not value):
        raise HttpError(400, f"'{name}' must be a non-empty string")
    return value


def _new_record(body: Any, where: str = "") -> NewRecord:
    if not isinstance(body, dict):
        raise HttpError(400, f"{where}a record must be an object")
    collection = _text_field(body, "collection", "expert_knowledge")
    if collection not in COLLECTIONS:
        raise HttpError(400, f"{where}collection must be one of {', '.join(COLLECTIONS)}")
    meta = body.get("meta", {})
    if not isinstance(meta, dict):
        raise HttpError(400, f"{where}'meta' must be an object")
    return NewRecord(_text_field(body, "text"), kind=_text_field(body, "kind", "note"),
                     collection=collection, meta=meta, agent=_text_field(body, "agent", ""))


def add_memory_routes(app: ApiApp, knowledge: KnowledgeService) -> None:
    async def add(request: Request) -> dict[str, Any]:
        """One record ({"text": ...}), or many ({"records": [{"text": ...}, ...]}) in one
        batch: one embedding call, one insert, one announcement per few hundred."""
        body = request.json()
        if "records" not in body:
            return record_to_json((await knowledge.add_many([_new_record(body)]))[0])
        rows = body["records"]
        if not isinstance(rows, list) or not 0 < len(rows) <= MAX_ADD_BATCH:
            raise HttpError(400, f"'records' must be a list of 1 to {MAX_ADD_BATCH} records")
        # An invalid record (ProtocolError: 400) fails the whole batch.
        records = await knowledge.add_many([_new_record(row, f"record {i}: ")
                                            for i, row in enumerate(rows)])
        return {"added": len(records), "ids": [r.id for r in records],
                "first_seq": records[0].seq, "last_seq": records[-1].seq}

    async def search(request: Request) -> list[dict[str, Any]]:
        query = request.arg("q")
        if not query:
            raise HttpError(400, "missing query parameter q")
        k = int(_number(request, "k", 5))
        if not 1 <= k <= 200:
            raise HttpError(400, "k must be between 1 and 200")
        collection = request.arg("collection")
        if collection is not None and collection not in COLLECTIONS:
            raise HttpError(400, f"collection must be one of {', '.join(COLLECTIONS)}")
        hits = await knowledge.store.search(query, k=k, collection=collection,
                                            kind=request.arg("kind"))
        return [{**record_to_json(h.record), "score": round(h.score, 4)} for h in hits]

    async def delete(request: Request) -> dict[str, Any]:
        return record_to_json(await knowledge.delete(_text_field(request.json(), "id")))

    async def ingest(request: Request) -> dict[str, Any]:
        body = request.json()
        paths = body.get("paths")
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise HttpError(400, "'paths' must be a non-empty list of paths")
        report = await knowledge.ingest(paths, prune=bool(body.get("prune", False)))
        return {k: getattr(report, k) for k in report.__dataclass_fields__}

    async def stats(_: Request) -> dict[str, Any]:
        return await knowledge.stats()

    async def marks(_: Request) -> dict[str, Any]:
        # Per author, the seq up to which every record is held here (what anti-entropy
        # compares): whether a node has caught up, without the scans that stats makes.
        return {"marks": await knowledge.store.high_water(), "waiting": knowledge.store.waiting()}

    async def export(_: Request) -> list[dict[str, Any]]:
        return [record_to_json(r) async for r in knowledge.store.export()]

    async def import_(request: Request) -> dict[str, Any]:
        rows = request.json().get("records")
        if not isinstance(rows, list) or len(rows) > MAX_IMPORT_BATCH:
            raise HttpError(400, f"'records' must be a list of at most {MAX_IMPORT_BATCH}")
        records, errors = [], []
        for i, row in enumerate(rows):
            try:
                records.append(record_from_json(row))
            except ProtocolError as exc:
                errors.append(f"record {i}: {exc}")
        stored = await knowledge.import_records(records)
        return {"stored": stored, "duplicates": len(records) - stored, "rejected": errors}

    app.route("POST", "/v1/memory/records", add)
    app.route("GET", "/v1/memory/search", search)
    app.route("POST", "/v1/memory/delete", delete)
    app.route("POST", "/v1/memory/ingest", ingest)
    app.route("GET", "/v1/memory/stats", stats)
    app.route("GET", "/v1/memory/marks", marks)
    app.route("GET", "/v1/memory/export", export)
    app.route("POST", "/v1/memory/import", import_)


def agents_json(asker: Asker) -> list[dict[str, Any]]:
    """Every agent the node knows, with its skills: ``meshnode agents --json``."""
    return [
        {
            "agent": card.name, "peer_id": peer, "local": peer == asker.self_id,
            "description": card.description, "version": card.version,
            "skills": [{"id": s.id, "name": s.name, "tags": list(s.tags)}
                       for s in card.skills],
            # This node's checks of the agent's answers: faithfulness, retrieval precision.
            "quality": asker.quality.summary(peer, card.name),
        }
        for peer, card in asker.known_agents()
    ]


def add_agent_routes(
    app: ApiApp, mesh: MeshA2A, asker: Asker, trust: TrustService
) -> None:
    async def agents(_: Request) -> list[dict[str, Any]]:
        return agents_json(asker)

    async def ask(request: Request) -> StreamingResponse:
        body = request.json()
        question = _text_field(body, "question")
        metadata: dict[str, Any] = {}
        if body.get("agent") is not None:
            metadata[AGENT_KEY] = _text_field(body, "agent")
        timeout = body.get("timeout", 60.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise HttpError(400, "'timeout' must be a positive number of seconds")
        metadata[TIMEOUT_KEY] = float(timeout)
        message = Message(role="user", parts=(TextPart(question),),
                          message_id=str(uuid.uuid4()), metadata=metadata)
        return StreamingResponse("application/x-ndjson", _ask_lines(mesh, message))

    async def rate(request: Request) -> dict[str, str]:
        body = request.json()
        rating = _text_field(body, "rating")
        if rating not in ("good", "bad"):
            raise HttpError(400, "'rating' must be good or bad")
        return asker.rate(_text_field(body, "task_id"), rating == "good")

    async def trust_view(_: Request) -> dict[str, Any]:
        return trust.snapshot()

    async def clean(request: Request) -> dict[str, Any]:
        if asker.learner is None:
            raise HttpError(409, "this node has no memory to clean")
        dry_run = request.json().get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise HttpError(400, "'dry_run' must be true or false")
        return {"dry_run": dry_run, "records": await asker.learner.clean(dry_run=dry_run)}

    async def quality(_: Request) -> list[dict[str, Any]]:
        return asker.quality.to_json()

    app.route("GET", "/v1/agents", agents)
    app.route("GET", "/v1/quality", quality)
    app.route("POST", "/v1/memory/clean", clean)
    app.route("POST", "/v1/ask", ask)
    app.route("POST", "/v1/rate", rate)
    app.route("GET", "/v1/trust", trust_view)


async def _ask_lines(mesh: MeshA2A, message: Message) -> AsyncIterator[bytes]:
    """One JSON object a line: progress as it happens, then the result or the error."""
    async for event in mesh.stream(message):
        line: dict[str, Any] | None = None
        if isinstance(event, TaskStatusUpdateEvent):
            if event.final and event.status.state != TaskState.COMPLETED:
                reason = event.status.message.text if event.status.message else ""
                line = {"error": reason, "state": str(event.status.state),
                        "task_id": event.task_id}
            elif "meshnode/progress" in event.metadata:
                line = {"progress": event.metadata["meshnode/progress"]}
        elif isinstance(event, TaskArtifactUpdateEvent):
            data = next((p.data for p in event.artifact.parts if isinstance(p, DataPart)), {})
            line = {"result": data}
        if line is not None:
            yield json.dumps(line, default=str).encode() + b"\n"
