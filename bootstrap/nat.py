"""Reachability from AutoNAT verdicts, and relayed addresses: the sans-IO part of NAT traversal.

A node asks peers it reached directly to dial it back (AutoNAT). Each peer's newest verdict
counts once; a refusal (the peer would not try, e.g. over a relayed connection) is no
verdict at all. The node is *public* or *private* once enough verdicts agree, *unknown*
before. A lying peer can sway a node with few peers, which is why more than one verdict is
wanted when more than one peer can give one.
"""

from __future__ import annotations

from collections import OrderedDict

from bootstrap.network import BootstrapError, parse_bootstrap

PUBLIC = "public"
PRIVATE = "private"
UNKNOWN = "unknown"


class ReachabilityVotes:
    def __init__(self, confirmations: int = 3, max_servers: int = 16) -> None:
        if confirmations < 1:
            raise ValueError("confirmations must be at least 1")
        self.confirmations = confirmations
        self.max_servers = max_servers
        self._votes: OrderedDict[str, bool] = OrderedDict()

    def vote(self, server: str, reachable: bool) -> None:
        self._votes.pop(server, None)
        self._votes[server] = reachable
        while len(self._votes) > self.max_servers:
            self._votes.popitem(last=False)

    def forget(self, server: str) -> None:
        self._votes.pop(server, None)

    @property
    def status(self) -> str:
        """public / private once ``confirmations`` verdicts agree (or every verdict there
        is, when fewer peers gave one) and outnumber the others; unknown before."""
        total = len(self._votes)
        if not total:
            return UNKNOWN
        public = sum(self._votes.values())
        private = total - public
        need = min(self.confirmations, total)
        if public >= need and public > private:
            return PUBLIC
        if private >= need and private > public:
            return PRIVATE
        return UNKNOWN

    def counts(self) -> dict[str, int]:
        public = sum(self._votes.values())
        return {"public": public, "private": len(self._votes) - public}


def relayed_addr(relay_addr: str, self_id: str) -> str:
    """The address others dial to reach ``self_id`` through the relay at ``relay_addr``
    (a direct /ip4|ip6|dns…/tcp/…/p2p/<relay> address)."""
    try:
        relay = parse_bootstrap(relay_addr)
    except BootstrapError as exc:
        raise BootstrapError(f"not a direct relay address: {exc}") from None
    if relay.peer_id == self_id:
        raise BootstrapError("a node cannot relay for itself")
    return f"{relay_addr}/p2p-circuit/p2p/{self_id}"


def relay_of(addr: str) -> str | None:
    """The relay's peer ID in a relayed address, None for a direct one."""
    head, sep, _ = addr.partition("/p2p-circuit")
    if not sep:
        return None
    try:
        return parse_bootstrap(head).peer_id
    except BootstrapError:
        return None
