"""The hello handshake and the members push-pull that follows it, for
:class:`~meshnode.node.membership.Membership`.

Every new connection starts with a signed hello each way on ``/meshnode/hello/1.0.0``: a
node of another network, or one that cannot sign or keep time, is refused, banned from
redials and reported as bad (evidence for the trust graph); a peer that speaks only gossip
is let through the hello gate (:mod:`meshnode.node.gate`) without one. After a hello this
node pulls the signed presence announcements the peer holds (``/meshnode/members/1.0.0``,
:mod:`meshnode.node.members`), verified like gossip and counted against the peer's
admission budget, so that a newcomer learns the mesh from its neighbours; membership
repeats the pull with a random neighbour once a refresh interval, as anti-entropy.

Kept apart from membership's presence and dialing because this is the per-connection
conversation: what a single peer may make this node believe or do when it connects.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from meshnode.node.admission import Refused
from meshnode.node.members import pull_members
from meshnode.node.streams import read_frame, write_frame
from meshnode.node.transport import DialError, ProtocolNotSupported, Stream
from protocols.codec import FrameDecoder
from protocols.envelope import NetworkMismatch, decode_envelope, encode_envelope, seal
from protocols.errors import ProtocolError, Rejected
from protocols.members import MAX_ENVELOPE, MAX_MEMBERS
from protocols.presence import HELLO, MAX_TTL_S, Hello, hello_from_envelope, presence_from_envelope

if TYPE_CHECKING:
    from meshnode.node.membership import Membership

# Membership's logger, as before the split: log filters on "peer joined" keep working.
log = logging.getLogger("meshnode.node.membership")
HELLO_PROTOCOL = "/meshnode/hello/1.0.0"
HELLO_TIMEOUT_S = 10.0
#: The largest hello accepted.
MAX_HELLO = 16 * 1024

__all__ = ["HELLO_PROTOCOL", "HELLO_TIMEOUT_S", "Handshake"]


class Handshake:
    def __init__(self, membership: Membership) -> None:
        self.m = membership

    # ---- hello -------------------------------------------------------------------

    def _hello_envelope(self) -> bytes:
        m = self.m
        hello = Hello(addrs=tuple(m.host.listen_addrs()), version=m.version)
        env = seal(m.signer, m.config.network_id, HELLO, hello.to_body(), now=m._clock())
        return encode_envelope(env)

    def _accept_hello(self, peer_id: str, frame: bytes | None) -> None:
        m = self.m
        if frame is None:
            raise trio.BrokenResourceError("peer closed the handshake")
        env = decode_envelope(frame, max_size=MAX_HELLO)
        if env.sender != peer_id:
            raise ProtocolError("hello signed by another peer than the connection's")
        if env.network_id != m.config.network_id:
            raise NetworkMismatch(
                f"peer is on network {env.network_id!r}, this node on {m.config.network_id!r}"
            )
        m.guard.admit(env, m._clock())
        hello = hello_from_envelope(env)
        known = peer_id in m.table
        m.table.saw_hello(peer_id, hello.addrs, hello.version, m._clock())
        m.handshakes["accepted"] += 1
        m.detector.connected(peer_id)
        m.gate.passed(peer_id)
        for listener in m.handshake_listeners:
            listener(peer_id)
        if not known:
            log.info("peer joined", extra={"peer": peer_id, "addrs": list(hello.addrs)})

    async def answer(self, stream: Stream) -> None:
        """The stream handler of ``HELLO_PROTOCOL``: the side that was dialed."""
        peer_id = stream.peer_id
        try:
            frame = await read_frame(stream, FrameDecoder(MAX_HELLO), timeout=HELLO_TIMEOUT_S)
            await write_frame(stream, self._hello_envelope(), timeout=HELLO_TIMEOUT_S)
            self._accept_hello(peer_id, frame)
        except (ProtocolError, trio.BrokenResourceError, trio.TooSlowError) as exc:
            await self.refuse(peer_id, exc)

    async def greet(self, peer_id: str) -> None:
        """Hello a newly connected peer, then pull the members it knows."""
        m = self.m
        # Runs in the membership nursery: whatever a peer's hello makes fail stays here.
        with m.faults.contained("hello", peer=peer_id):
            try:
                async with m.host.open_stream(
                    peer_id, HELLO_PROTOCOL, timeout=HELLO_TIMEOUT_S
                ) as stream:
                    await write_frame(stream, self._hello_envelope(), timeout=HELLO_TIMEOUT_S)
                    frame = await read_frame(stream, FrameDecoder(MAX_HELLO),
                                             timeout=HELLO_TIMEOUT_S)
                    self._accept_hello(peer_id, frame)
            except ProtocolNotSupported as exc:
                if m.gate.no_hello(peer_id):
                    log.info("gossip-only peer: it does not speak meshnode's hello",
                             extra={"peer": peer_id})
                else:
                    await self.refuse(peer_id, exc)
                return  # nothing to pull from a peer without the hello
            except (ProtocolError, trio.BrokenResourceError, DialError, trio.TooSlowError) as exc:
                await self.refuse(peer_id, exc)
                return
            await self.pull(peer_id)

    async def refuse(self, peer_id: str, exc: BaseException) -> None:
        m = self.m
        reason = str(exc) or type(exc).__name__
        m.handshakes["wrong_network" if isinstance(exc, NetworkMismatch) else
                     "refused" if isinstance(exc, ProtocolError) else "failed"] += 1
        if isinstance(exc, NetworkMismatch):
            level = logging.ERROR if peer_id in m._bootstrap else logging.WARNING
            log.log(level, "refusing peer of another network", extra={"peer": peer_id,
                                                                       "reason": reason})
        else:
            log.warning("handshake failed", extra={"peer": peer_id, "reason": reason})
        if isinstance(exc, ProtocolError):
            # Another network, or a peer that cannot sign or keep time: not worth a retry.
            m.dialer.ban(peer_id, m._clock())
            m.report_bad_message(peer_id, exc)
        else:
            m.dialer.failed(peer_id, m._clock())  # slow or gone: back off and retry
            if m.gate.greeted(peer_id):
                return  # another connection already proved the peer: keep that one
        await m.host.disconnect(peer_id)

    # ---- members push-pull ----------------------------------------------------------

    def members_for(self, limit: int) -> list[bytes]:
        """What this node serves a push-pull: its own announcement, then those it holds."""
        own = [self.m._own] if self.m._own else []
        return own + self.m.table.envelopes(limit - len(own))

    async def pull(self, peer_id: str) -> None:
        """Learn the members ``peer_id`` knows: each announcement verified like gossip (the
        signature, network and age; the relay is trusted with nothing)."""
        m = self.m
        try:
            members = await pull_members(m.host, peer_id, MAX_MEMBERS)
        except (ProtocolError, DialError, trio.TooSlowError, trio.BrokenResourceError,
                trio.ClosedResourceError) as exc:
            log.debug("members pull failed", extra={"peer": peer_id, "error": str(exc)})
            m.pulled["failed"] += 1
            return
        m.pulled["completed"] += 1
        for i, raw in enumerate(members):
            if i % 32 == 31:
                await trio.lowlevel.checkpoint()
            try:
                self._apply_pulled(raw, peer_id)
            except Refused:
                m.pulled["over_budget"] += len(members) - i
                return  # this peer introduced as many new identities as it may for now
            except ProtocolError as exc:
                # A relay only serves what it verified: a bad one was forged or altered.
                m.pulled["bad"] += 1
                if not isinstance(exc, Rejected):
                    m.report_bad_message(peer_id, exc)
                    return

    def _apply_pulled(self, raw: bytes, source: str) -> None:
        m = self.m
        now = m._clock()
        env = decode_envelope(raw, max_size=MAX_ENVELOPE)
        if env.network_id != m.config.network_id:
            raise NetworkMismatch("pulled announcement of another network")
        if env.ts > now + m.guard.max_skew_s:
            raise Rejected("pulled announcement from the future")
        presence = presence_from_envelope(env)
        if presence.peer_id == m.signer.peer_id:
            return
        if now - env.ts > min(presence.ttl_s, MAX_TTL_S):
            m.pulled["stale"] += 1
            return
        if not m.table.remembers(presence.peer_id):
            # Identities a peer hands over count against what it may introduce, exactly as
            # those it relays: a push-pull is no way around the budget.
            m.admission.vouch(source, presence.peer_id, now)
        if m.table.saw_presence(presence, now, envelope=raw, heard_at=env.ts):
            m.pulled["learned"] += 1
            m.fetcher.want(presence.cards, [presence.peer_id, source])
