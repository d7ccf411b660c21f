"""Asking one agent: the message an ask sends an agent and how its answer comes back.

The caller owns the way one agent is reached (this node's own agents through its task
service, other nodes' over A2A sessions or a stream a call), the message it is sent (the
asker, the deadline left, whom the question is for or where it is forwarded, what a
delegated ask carries) and the turning of its task events, or of its failure, into the
agent's outcome. It is split from the asker (meshnode.ask.asker), which decides whom to ask
and checks what comes back.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from meshnode.a2a.owners import Owner
from meshnode.a2a.session import A2AClient
from meshnode.a2a.tasks import (
    AGENT_KEY,
    ASKER_KEY,
    DEADLINE_KEY,
    FORWARD_KEY,
    PeerBusy,
    TaskService,
    call_agent,
)
from meshnode.ask.outcomes import AgentOutcome
from meshnode.node.faults import Faults
from meshnode.node.transport import DialError, Host
from protocols.a2a import (
    A2AError,
    DataPart,
    Message,
    StreamEvent,
    Task,
    TaskArtifactUpdateEvent,
    TaskStatusUpdateEvent,
    TextPart,
)
from protocols.errors import ProtocolError

Progress = Callable[[dict[str, Any]], Awaitable[None]]
#: Time kept back from an agent's deadline for the network and the asker's own work.
MARGIN_S = 1.0
#: Of that, what the asker keeps for itself after the answers' deadline: the quality check
#: runs within the ask's deadline too.
QUALITY_S = 0.5


@dataclass(frozen=True, slots=True)
class Carried:
    """What an ask made on behalf of an agent's task carries (meshnode.ask.delegation):
    extra message metadata, the task's conversation, and agents it must not ask."""

    metadata: dict[str, Any]
    context_id: str | None = None
    #: (peer ID, agent name) of agents not to ask (those already in the chain).
    exclude: frozenset[tuple[str, str]] = frozenset()


class AgentCaller:
    """Asks one agent, of this node or another, and records what came back."""

    def __init__(self, host: Host, client: A2AClient | None, tasks: TaskService,
                 faults: Faults, self_id: str) -> None:
        self.host = host
        #: How agents of other nodes are called (over A2A sessions); None: a stream a call.
        self.client = client
        self.tasks = tasks
        self.faults = faults
        self.self_id = self_id

    async def call(
        self, outcome: AgentOutcome, question: str, remaining: float, progress: Progress,
        forward: dict[str, Any] | None, owner: Owner, carried: Carried | None,
    ) -> None:
        """Ask ``outcome``'s agent within ``remaining`` seconds (less QUALITY_S), filling
        ``outcome`` with its task, state, answer data and time taken; never raises for what
        the agent or the network did."""
        candidate = outcome.scored.candidate
        await progress({"stage": "asking", "agent": candidate.agent, "peer": candidate.peer_id,
                        "explore": outcome.scored.explore})
        metadata: dict[str, Any] = {ASKER_KEY: self.self_id,
                                    DEADLINE_KEY: max(1.0, remaining - MARGIN_S)}
        if forward is None:
            metadata[AGENT_KEY] = candidate.agent
        else:
            metadata[FORWARD_KEY] = forward
        if carried is not None:
            metadata.update(carried.metadata)
        message = Message(role="user", parts=(TextPart(question),),
                          message_id=str(uuid.uuid4()), metadata=metadata,
                          context_id=carried.context_id if carried else None)
        started = time.monotonic()
        final: list[Task | None] = [None]

        async def on_event(event: StreamEvent) -> None:
            if isinstance(event, Task):
                outcome.task_id = event.id
            elif isinstance(event, TaskArtifactUpdateEvent):
                for part in event.artifact.parts:
                    if isinstance(part, DataPart):
                        outcome.data = dict(part.data)
            elif isinstance(event, TaskStatusUpdateEvent):
                outcome.task_id = event.task_id
                outcome.state = str(event.status.state)
                if event.status.message is not None:
                    outcome.reason = event.status.message.text
                await progress({"stage": "status", "agent": candidate.agent,
                                "peer": candidate.peer_id, "state": outcome.state})

        wait = max(remaining - QUALITY_S, 0.0)
        try:
            with trio.fail_after(wait):
                if candidate.peer_id == self.self_id:
                    # This node's own agent works for whoever asked (and counts against it).
                    try:
                        final[0] = await self.tasks.run_task(message, on_event, owner=owner)
                    except A2AError as exc:  # refused before it began: too many under way
                        raise PeerBusy(exc.message) from None
                elif self.client is not None:
                    await self.client.call(candidate.peer_id, message, on_event, timeout=wait)
                else:
                    await call_agent(self.host, candidate.peer_id, message, on_event,
                                     timeout=wait)
        except trio.TooSlowError:
            outcome.state, outcome.reason = "timeout", f"no answer within {wait:.0f} s"
        except (DialError, trio.BrokenResourceError) as exc:
            outcome.state, outcome.reason = "failed", f"unreachable: {exc}"
        except PeerBusy as exc:  # a budget of the peer's, mostly spent by this node itself
            outcome.state, outcome.reason = "busy", str(exc)
        except ProtocolError as exc:
            outcome.state, outcome.reason = "malformed", str(exc)
        except Exception as exc:  # a bug met by this peer's answer fails this answer only
            self.faults.record("ask", exc, peer=candidate.peer_id)
            outcome.state, outcome.reason = "failed", f"internal error: {exc}"
        outcome.seconds = time.monotonic() - started
