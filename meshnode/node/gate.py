"""HelloGate: which connected peers completed meshnode's hello, and which only speak libp2p.

A peer earns tasks and memory (the A2A and memsync stream protocols) only by a verified
hello on its current connection. A libp2p peer that does not speak the hello protocol at
all (a js-libp2p or go-libp2p node, say) may stay connected as a *gossip-only* peer: it
relays GossipSub messages, which meshnode's topic validators check like anyone's, but it is
never listed, asked, or served. Their number is bounded so that they cannot crowd out the
mesh. Pure bookkeeping; the membership service feeds it connection events.
"""

from __future__ import annotations

import trio

#: Gossip-only peers kept at once; more are disconnected.
MAX_GOSSIP_ONLY = 32


class HelloGate:
    def __init__(self, max_gossip_only: int = MAX_GOSSIP_ONLY) -> None:
        self.max_gossip_only = max_gossip_only
        self.gossip_only: set[str] = set()
        # One event per connected peer that someone waits on or that greeted: bounded by
        # the number of connections, and dropped when the peer disconnects.
        self._greeted: dict[str, trio.Event] = {}

    def passed(self, peer_id: str) -> None:
        """The peer's hello was verified on its current connection."""
        self.gossip_only.discard(peer_id)
        self._greeted.setdefault(peer_id, trio.Event()).set()

    def no_hello(self, peer_id: str) -> bool:
        """The peer does not speak hello. True if it may stay as a gossip-only peer."""
        if peer_id in self.gossip_only:
            return True
        if len(self.gossip_only) >= self.max_gossip_only:
            return False
        self.gossip_only.add(peer_id)
        self._wake(peer_id)
        return True

    def gone(self, peer_id: str) -> None:
        """The peer has no connection left: whatever it proved is forgotten."""
        self.gossip_only.discard(peer_id)
        self._wake(peer_id)
        self._greeted.pop(peer_id, None)

    def _wake(self, peer_id: str) -> None:
        # Waiters re-check the state: an unset event woken here means "refused".
        event = self._greeted.pop(peer_id, None)
        if event is not None and not event.is_set():
            event.set()

    def greeted(self, peer_id: str) -> bool:
        event = self._greeted.get(peer_id)
        return event is not None and event.is_set() and peer_id not in self.gossip_only

    async def wait(self, peer_id: str, *, timeout: float) -> bool:
        """True once the peer's hello is verified; False if it has none (gossip-only, gone)
        or none arrives within ``timeout`` seconds.

        A stream can arrive before the hello exchange that the same new connection started
        has finished, so a handler waits a little instead of refusing at once.
        """
        if peer_id in self.gossip_only:
            return False
        event = self._greeted.setdefault(peer_id, trio.Event())
        with trio.move_on_after(timeout):
            await event.wait()
        if not event.is_set() and self._greeted.get(peer_id) is event:
            del self._greeted[peer_id]  # nobody greeted: leave nothing behind
        return self.greeted(peer_id)
