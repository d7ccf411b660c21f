"""Who a task belongs to, and what each owner may keep on this node.

Every task has an :class:`Owner`: the peer that sent it over ``/meshnode/a2a/1.0.0`` (as
its connection authenticated it), an anonymous A2A client of the public HTTP endpoint (by
its address), or the operator (this node's own user: the CLI, the dashboard, an A2A client
with the API token, and the node's own work). A task is visible to, and can be cancelled
by, its owner only; the operator sees every task.

:class:`Quota` is the bookkeeping of what owners hold (running tasks, finished tasks,
bytes) against the ``[limits]`` budgets, and which finished task goes first when the store
is full: the owner's own oldest when it is over its share; else the one of the owner with
the worst record with this node (its standing), oldest first. The operator is never
refused and its tasks go last.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from meshnode.config import LimitSettings
from meshnode.node.limits import PeerLimits
from protocols.a2a import A2AError

MIB = 1024 * 1024
#: The A2A error code of a task refused because its owner has too many running (JSON-RPC
#: leaves -32000..-32099 to implementations; 29 as in HTTP 429).
BUSY = -32029


@dataclass(frozen=True, slots=True)
class Owner:
    kind: Literal["operator", "peer", "client"]
    id: str = ""

    @property
    def operator(self) -> bool:
        return self.kind == "operator"

    @property
    def peer(self) -> str | None:
        """The peer ID of a peer's task, None for the others."""
        return self.id if self.kind == "peer" else None

    def may_see(self, owner: Owner) -> bool:
        return self.operator or self == owner

    def __str__(self) -> str:
        return "operator" if self.operator else f"{self.kind} {self.id}"


#: This node's own user, and the node itself.
OPERATOR = Owner("operator")


def peer_owner(peer_id: str) -> Owner:
    return Owner("peer", peer_id)


def client_owner(address: str) -> Owner:
    """An anonymous client of the public A2A endpoint, known only by its address."""
    return Owner("client", address[:64])


@dataclass(slots=True)
class _Held:
    running: int = 0
    finished: int = 0
    bytes: int = 0


class Quota:
    """What each owner holds in a task store, checked against the budgets of ``limits``."""

    def __init__(self, limits: PeerLimits) -> None:
        self.limits = limits
        self._held: dict[Owner, _Held] = {}
        self.bytes = 0

    @property
    def settings(self) -> LimitSettings:
        return self.limits.settings

    def standing(self, owner: Owner) -> float:
        """The owner's record with this node: the operator first, then peers by evidence;
        anonymous clients count as strangers."""
        if owner.operator:
            return float("inf")
        return self.limits.standing(owner.peer) if owner.peer is not None else 1.0

    def held(self, owner: Owner) -> _Held:
        return self._held.get(owner) or _Held()

    def admit(self, owner: Owner, running: Iterable[Owner]) -> None:
        """Raise A2AError(BUSY) if ``owner`` may not start another task now; ``running`` are
        the owners of the tasks under way."""
        if owner.operator:
            return
        s = self.settings
        remote = [o for o in running if not o.operator]
        reason = None
        if self.held(owner).running >= s.tasks_running_per_peer:
            reason = "tasks_running_per_peer"
        elif len(remote) >= s.tasks_running:
            reason = "tasks_running"
        elif self.standing(owner) <= 1.0 and sum(
            1 for o in remote if self.standing(o) <= 1.0
        ) >= s.tasks_running // 2:
            # Peers with a good record keep half the slots, whatever a swarm of new ones does.
            reason = "tasks_running_strangers"
        if reason is not None:
            self.limits.refuse(owner.peer, reason)
            raise A2AError(BUSY, f"too many tasks under way ({reason.replace('_', ' ')}); "
                                 "try again later")

    # ---- bookkeeping ------------------------------------------------------------------

    def started(self, owner: Owner, size: int) -> None:
        held = self._held.setdefault(owner, _Held())
        held.running += 1
        held.bytes += size
        self.bytes += size

    def finished(self, owner: Owner, old_size: int, size: int) -> None:
        held = self._held.setdefault(owner, _Held())
        held.running -= 1
        held.finished += 1
        held.bytes += size - old_size
        self.bytes += size - old_size

    def dropped(self, owner: Owner, size: int) -> None:
        held = self._held.get(owner)
        if held is None:
            return
        held.finished -= 1
        held.bytes -= size
        self.bytes -= size
        if held.running == held.finished == 0:
            del self._held[owner]

    def over_share(self, owner: Owner) -> bool:
        """Whether ``owner`` holds more finished tasks or bytes than one owner may."""
        if owner.operator:
            return False
        held, s = self.held(owner), self.settings
        return held.finished > s.tasks_kept_per_peer or held.bytes > s.task_mib_per_peer * MIB

    def over_total(self, tasks: int, kept: int) -> bool:
        return tasks > kept or self.bytes > self.settings.task_mib * MIB

    def victim(self, finished: Iterable[tuple[str, Owner]]) -> str | None:
        """Of the finished tasks (id, owner), oldest first, the one to drop: the oldest of
        the owner with the worst standing."""
        standing: dict[Owner, float] = {}
        best: tuple[float, str] | None = None
        for task_id, owner in finished:
            if owner not in standing:
                standing[owner] = self.standing(owner)
            if best is None or standing[owner] < best[0]:
                best = (standing[owner], task_id)
        return best[1] if best is not None else None

    def owners(self) -> Counter[str]:
        """How many tasks each kind of owner holds (for the status)."""
        counts: Counter[str] = Counter()
        for owner, held in self._held.items():
            counts[owner.kind] += held.running + held.finished
        return counts

