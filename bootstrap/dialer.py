"""Whom to dial next: a sans-IO policy with per-peer exponential backoff.

The node keeps ``target`` connections. Bootstrap peers are dialed until the node has any
connection at all; peers learned by gossip are dialed until the target is met. A peer that
failed is retried after a backoff that doubles up to ``max_backoff_s``; a peer found to be
on another network is left alone for ``ban_s``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


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
        rng: random.Random | None = None,
    ) -> None:
        self.target = target
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self.ban_s = ban_s
        self._rng = rng or random.Random()
        self._state: dict[str, _DialState] = {}
        self._in_flight: set[str] = set()

    def _ready(self, peer_id: str, now: float) -> bool:
        state = self._state.get(peer_id)
        return peer_id not in self._in_flight and (
            state is None or (state.next_attempt <= now and state.banned_until <= now)
        )

    def choose(
        self,
        *,
        known: Mapping[str, Sequence[str]],
        connected: Iterable[str],
        bootstrap: Mapping[str, str],
        self_id: str,
        now: float,
    ) -> list[tuple[str, list[str]]]:
        """The (peer, addresses) to dial now, and marks them in flight.

        ``known`` maps gossip-learned peers to their addresses; ``bootstrap`` maps bootstrap
        peer IDs to their full address.
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
            candidates = [
                p
                for p, addrs in known.items()
                if addrs
                and p != self_id
                and p not in connected
                and all(p != q for q, _ in picks)
                and self._ready(p, now)
            ]
            self._rng.shuffle(candidates)
            picks += [(p, list(known[p])) for p in candidates[: missing - len(picks)]]
        self._in_flight.update(p for p, _ in picks)
        return picks

    def succeeded(self, peer_id: str) -> None:
        self._in_flight.discard(peer_id)
        state = self._state.get(peer_id)
        if state is not None and state.banned_until:
            state.failures = 0  # a ban outlives a dial that happened to succeed
        else:
            self._state.pop(peer_id, None)

    def failed(self, peer_id: str, now: float) -> float:
        """Record a failed dial; returns the backoff before the next attempt."""
        self._in_flight.discard(peer_id)
        state = self._state.setdefault(peer_id, _DialState())
        state.failures += 1
        # Cap the exponent: 2 ** 1024 no longer converts to float (OverflowError).
        exponent = min(state.failures - 1, 64)
        delay = min(self.max_backoff_s, self.base_backoff_s * 2.0**exponent)
        delay *= 0.5 + self._rng.random() / 2  # jitter, so a mesh does not retry in lockstep
        state.next_attempt = now + delay
        return delay

    def ban(self, peer_id: str, now: float) -> None:
        """Stop dialing a peer for ``ban_s`` (it is on another network, or misbehaved)."""
        self._in_flight.discard(peer_id)
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
