"""Whom to dial next: a sans-IO policy with per-peer exponential backoff.

The node keeps ``target`` connections. Bootstrap peers are dialed until the node has any
connection at all; peers learned by gossip are dialed until the target is met. A peer that
failed is retried after a backoff that doubles up to ``max_backoff_s``; a peer found to be
on another network is left alone for ``ban_s``.

Addresses only announced are not a reason to dial anyone: peers this node has verified (a
hello on an earlier connection) come first, and of the others at most a few a minute are
dialed (``unverified_per_s``, ``unverified_burst``), each at no more than
``MAX_DIAL_ADDRS`` addresses. An address that failed backs off like its peer, whichever
identity announces it next, so a swarm announcing one victim's address cannot make the node
dial it again and again.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass

from protocols.bucket import TokenBucket

#: Addresses of one announced peer that are dialed.
MAX_DIAL_ADDRS = 4
#: Failed addresses remembered for their backoff.
MAX_FAILED_ADDRS = 4096


def _endpoint(addr: str) -> str:
    """What is actually dialed: the address without its /p2p/ part."""
    return addr.split("/p2p/")[0]


@dataclass(slots=True)
class _DialState:
    failures: int = 0
    next_attempt: float = 0.0
    banned_until: float = 0.0


class DialPolicy:
    def __init__(
        self,
        target: int,
        *,
        base_backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        ban_s: float = 600.0,
        unverified_per_s: float = math.inf,
        unverified_burst: float = math.inf,
        rng: random.Random | None = None,
    ) -> None:
        self.target = target
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self.ban_s = ban_s
        self._rng = rng or random.Random()
        self._state: dict[str, _DialState] = {}
        self._in_flight: set[str] = set()
        self._unverified = TokenBucket(unverified_burst, unverified_per_s, 0.0)
        self._endpoints: OrderedDict[str, _DialState] = OrderedDict()
        self._dialing: dict[str, str] = {}  # endpoint -> the peer it is being dialed for

    def _ready(self, peer_id: str, now: float) -> bool:
        state = self._state.get(peer_id)
        return peer_id not in self._in_flight and (
            state is None or (state.next_attempt <= now and state.banned_until <= now)
        )

    def _addrs_ready(self, addrs: Sequence[str], now: float) -> list[str]:
        """The addresses worth a dial now: not backing off, and not being dialed already
        for another identity."""
        ready = []
        for addr in addrs[:MAX_DIAL_ADDRS]:
            endpoint = _endpoint(addr)
            state = self._endpoints.get(endpoint)
            if endpoint not in self._dialing and (state is None or state.next_attempt <= now):
                ready.append(addr)
        return ready

    def _backoff(self, state: _DialState, now: float) -> float:
        state.failures += 1
        # Cap the exponent: 2 ** 1024 no longer converts to float (OverflowError).
        exponent = min(state.failures - 1, 64)
        delay = min(self.max_backoff_s, self.base_backoff_s * 2.0**exponent)
        delay *= 0.5 + self._rng.random() / 2  # jitter, so a mesh does not retry in lockstep
        state.next_attempt = now + delay
        return delay

    def choose(
        self,
        *,
        known: Mapping[str, Sequence[str]],
        connected: Iterable[str],
        bootstrap: Mapping[str, str],
        self_id: str,
        now: float,
        verified: Set[str] | None = None,
    ) -> list[tuple[str, list[str]]]:
        """The (peer, addresses) to dial now, and marks them in flight.

        ``known`` maps gossip-learned peers to their addresses; ``bootstrap`` maps bootstrap
        peer IDs to their full address; ``verified`` are the known peers whose hello this
        node checked before (None: all of them).
        """
        connected = set(connected)
        missing = self.target - len(connected) - len(self._in_flight)
        picks: list[tuple[str, list[str]]] = []
        if not connected and not self._in_flight:
            # Alone: try every bootstrap peer that is not backing off.
            for peer_id, addr in bootstrap.items():
                if peer_id != self_id and self._ready(peer_id, now):
                    picks.append((peer_id, [addr]))
        if missing > len(picks):
            chosen = {p for p, _ in picks}
            candidates = [
                p
                for p, addrs in known.items()
                if addrs
                and p != self_id
                and p not in connected
                and p not in chosen
                and self._ready(p, now)
            ]
            self._rng.shuffle(candidates)
            # Peers verified before first; then, within the budget, peers only announced.
            candidates.sort(key=lambda p: verified is not None and p not in verified)
            for peer_id in candidates:
                if len(picks) >= missing:
                    break
                addrs = self._addrs_ready(known[peer_id], now)
                if not addrs:
                    continue
                if verified is not None and peer_id not in verified \
                        and not self._unverified.take(1.0, now):
                    break
                picks.append((peer_id, addrs))
                self._dialing.update((_endpoint(a), peer_id) for a in addrs)
        self._in_flight.update(p for p, _ in picks)
        return picks

    def _done(self, peer_id: str) -> None:
        self._in_flight.discard(peer_id)
        for endpoint in [e for e, p in self._dialing.items() if p == peer_id]:
            del self._dialing[endpoint]

    def succeeded(self, peer_id: str, addrs: Sequence[str] = ()) -> None:
        self._done(peer_id)
        for addr in addrs:
            self._endpoints.pop(_endpoint(addr), None)
        state = self._state.get(peer_id)
        if state is not None and state.banned_until:
            state.failures = 0  # a ban outlives a dial that happened to succeed
        else:
            self._state.pop(peer_id, None)

    def failed(self, peer_id: str, now: float, addrs: Sequence[str] = ()) -> float:
        """Record a failed dial (of ``addrs``); returns the backoff before the next
        attempt."""
        self._done(peer_id)
        delay = self._backoff(self._state.setdefault(peer_id, _DialState()), now)
        # The addresses back off too, whichever identity announces them next.
        for addr in addrs:
            key = _endpoint(addr)
            self._backoff(self._endpoints.setdefault(key, _DialState()), now)
            self._endpoints.move_to_end(key)
        while len(self._endpoints) > MAX_FAILED_ADDRS:
            self._endpoints.popitem(last=False)
        return delay

    def ban(self, peer_id: str, now: float) -> None:
        """Stop dialing a peer for ``ban_s`` (it is on another network, or misbehaved)."""
        self._done(peer_id)
        state = self._state.setdefault(peer_id, _DialState())
        state.banned_until = state.next_attempt = now + self.ban_s

    def banned(self, peer_id: str, now: float) -> bool:
        state = self._state.get(peer_id)
        return state is not None and state.banned_until > now

    def forget(self, peer_ids: Iterable[str], now: float) -> None:
        """Drop the dial history of expired peers, but remember bans."""
        for peer_id in peer_ids:
            if not self.banned(peer_id, now):
                self._state.pop(peer_id, None)
