"""NatService: reachability (AutoNAT), relays (Circuit Relay v2) and hole punching (DCUtR).

One service owns py-libp2p's NAT traversal parts for one node:

- **AutoNAT.** Every node answers dial-back requests, and asks peers it reached directly to
  dial it back at its listen and predicted public addresses; their verdicts
  (``bootstrap.nat.ReachabilityVotes``) make it *public*, *private* or *unknown*.
- **Relays.** A private node reserves a slot on up to ``MAX_RELAYS`` relay-capable peers and
  advertises ``…/p2p/<relay>/p2p-circuit/p2p/<self>`` in its hello and presence, so the mesh
  can dial it through the relay. Serving as a relay is opt-in (``network.relay_service``),
  within limits on reservations, circuits, circuit duration and bytes.
- **Hole punching.** While a peer is reachable only through a relay, DCUtR tries to open a
  direct connection (both sides dial at once, so each NAT sees outgoing traffic first), and
  retries every ``network.hole_punch_retry_s``; streams move to the direct connection.
"""

from __future__ import annotations

import logging
import random
import time
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from typing import Any

import multiaddr
import trio
from libp2p.host.autonat.autonat import AutoNATService
from libp2p.host.autonat.pb.autonat_pb2 import Message as AutoNATMessage
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage, Status
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.relay.circuit_v2.utils import read_delimited_msg, write_delimited_msg
from libp2p.tools.anyio_service import background_trio_service

from bootstrap.nat import PRIVATE, PUBLIC, ReachabilityVotes, relay_of, relayed_addr
from bootstrap.network import BootstrapError
from meshnode.config import NodeConfig
from meshnode.node.host import DialError, MeshHost
from meshnode.node.membership import Membership

log = logging.getLogger(__name__)
MAX_RELAYS = 2
#: AutoNAT rounds: soon after start, then every CHECK_UNKNOWN_S while undecided.
FIRST_CHECK_S = 3.0
CHECK_UNKNOWN_S = 15.0
CHECK_DECIDED_S = 300.0
SERVERS_PER_ROUND = 4
QUERY_TIMEOUT_S = 30.0
DIALBACK_TIMEOUT_S = 10.0
DIALBACK_INTERVAL_S = 30.0
RESERVE_TIMEOUT_S = 15.0
RELAY_RETRY_S = 600.0
PUNCH_TIMEOUT_S = 60.0
PUNCH_DIAL_TIMEOUT_S = 4


class DialBackAutoNAT(AutoNATService):  # type: ignore[misc]
    """py-libp2p's AutoNAT server dials the requester back with ``host.connect``, which
    returns at once when the requester is already connected: every requester, NAT or not,
    was told it is publicly reachable. This one makes a fresh connection to the address and
    closes it again, and dials a peer back at most once per ``DIALBACK_INTERVAL_S``, at
    most four at a time, so it cannot be made to dial in a loop."""

    def __init__(self, host: Any) -> None:
        super().__init__(host, serve=True)
        self._last_dial: dict[ID, float] = {}
        self._dialing = trio.CapacityLimiter(4)

    async def _handle_dial(self, message: Any, observed_ip: str | None,
                           is_relayed: bool) -> Any:
        peer_id = ID(message.dial.peer.id)
        now = time.monotonic()
        if now - self._last_dial.get(peer_id, -DIALBACK_INTERVAL_S) < DIALBACK_INTERVAL_S:
            refusal = AutoNATMessage()
            refusal.type = AutoNATMessage.DIAL_RESPONSE
            refusal.dialResponse.status = AutoNATMessage.E_DIAL_REFUSED
            refusal.dialResponse.statusText = "asked too often"
            return refusal
        if len(self._last_dial) > 1024:
            self._last_dial = {p: t for p, t in self._last_dial.items()
                               if now - t < DIALBACK_INTERVAL_S}
        self._last_dial[peer_id] = now
        async with self._dialing:
            return await super()._handle_dial(message, observed_ip, is_relayed)

    async def _try_dial(self, peer_id: ID, addrs: list[bytes]) -> bytes | None:
        network = self.host.get_network()
        for addr in addrs:
            try:
                with trio.fail_after(DIALBACK_TIMEOUT_S):
                    conn = await network.dial_addr(multiaddr.Multiaddr(addr), peer_id)
            except Exception:  # unreachable there: try the next address
                continue
            with suppress(Exception):
                await conn.close()  # only the dial-back connection; others stay
            return bytes(addr)
        return None


@dataclass
class _Reservation:
    relay: str
    expires: float
    addrs: list[str]


class NatService:
    def __init__(self, config: NodeConfig, host: MeshHost, membership: Membership) -> None:
        self.config = config
        self.host = host
        self.membership = membership
        self.votes = ReachabilityVotes(config.autonat_confirmations)
        self.reservations: dict[str, _Reservation] = {}
        self._not_relays: dict[str, float] = {}
        self.hole_punches = {"attempted": 0, "succeeded": 0}
        raw = host.libp2p
        self._raw = raw
        self.limits = RelayLimits(
            duration=int(config.relay_circuit_duration_s), data=config.relay_circuit_bytes,
            max_circuit_conns=config.relay_max_circuits,
            max_reservations=config.relay_max_reservations,
        )
        self.relay = CircuitV2Protocol(raw, limits=self.limits, allow_hop=config.relay_service)
        roles = RelayRole.STOP | RelayRole.CLIENT
        if config.relay_service:
            roles |= RelayRole.HOP
        self.transport = CircuitV2Transport(raw, self.relay,
                                            RelayConfig(roles=roles, limits=self.limits))
        self.autonat = DialBackAutoNAT(raw)
        # py-libp2p first tries a plain direct dial and waits up to dial_timeout (10 s) for
        # it, and as long for each hole-punch dial: behind a NAT that drops unsolicited
        # connections that plain dial can only time out. Simultaneous open takes one RTT.
        self.dcutr = DCUtRProtocol(raw, dial_timeout=PUNCH_DIAL_TIMEOUT_S)

    @property
    def reachability(self) -> str:
        return self.votes.status

    # ---- lifecycle ------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(background_trio_service(self.relay))
            if self.config.hole_punching:
                await stack.enter_async_context(background_trio_service(self.dcutr))
            self.host.set_circuit_dialer(self._dial_via_relay)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._autonat_loop)
                    nursery.start_soon(self._relay_loop)
                    if self.config.hole_punching:
                        nursery.start_soon(self._punch_loop)
                    task_status.started()
            finally:
                self.host.set_circuit_dialer(None)
                self.host.set_relay_addrs([])

    # ---- what the node's peers look like from here ---------------------------------

    def connection_kind(self, peer_id: str) -> str | None:
        """"direct" if any connection to the peer is direct, "relayed" if all go through
        a relay, None when not connected."""
        try:
            conns = self._raw.get_network().connections.get(ID.from_base58(peer_id)) or []
        except ValueError:
            return None
        kinds = {_kind(conn) for conn in conns}
        if not kinds:
            return None
        return "direct" if "direct" in kinds else "relayed"

    def connection_kinds(self) -> dict[str, str]:
        out = {}
        for peer in list(self._raw.get_network().connections):
            kind = self.connection_kind(str(peer))
            if kind is not None:
                out[str(peer)] = kind
        return out

    def snapshot(self) -> dict[str, Any]:
        now = time.time()
        return {
            "reachability": self.reachability,
            "autonat": self.votes.counts(),
            "relays": [{"peer_id": r.relay, "expires_in_s": round(r.expires - now),
                        "addrs": r.addrs} for r in self.reservations.values()],
            "relay_service": {
                "enabled": self.config.relay_service,
                "reservations": len(self.relay.resource_manager._reservations),
                "circuits": len(self.relay._active_relays),
                "limits": {"reservations": self.limits.max_reservations,
                           "circuits": self.limits.max_circuit_conns,
                           "circuit_duration_s": self.limits.duration,
                           "circuit_bytes": self.limits.data},
            },
            # Retries of this service, and peers py-libp2p's DCUtR connected directly (by
            # its own first attempts or these retries).
            "hole_punching": {"enabled": self.config.hole_punching, **self.hole_punches,
                              "direct_peers": len(self.dcutr._direct_connections)},
        }

    # ---- dialing through relays -----------------------------------------------------

    async def _dial_via_relay(self, peer_id: str, addrs: list[str], timeout: float) -> None:
        errors = []
        for addr in addrs:
            if relay_of(addr) in (None, self.host.peer_id):
                continue
            try:
                with trio.fail_after(timeout):
                    await self.transport.dial(multiaddr.Multiaddr(addr))
            except trio.TooSlowError:
                errors.append(f"{addr}: timed out")
            except Exception as exc:  # py-libp2p raises many unrelated types
                errors.append(f"{addr}: {exc or type(exc).__name__}")
            else:
                log.info("connected through a relay", extra={"peer": peer_id, "addr": addr})
                return
        raise DialError(f"dialing {peer_id} through relays failed: {'; '.join(errors)}")

    # ---- AutoNAT --------------------------------------------------------------------

    def _direct_peers(self) -> list[str]:
        return [p for p in self.membership.verified_connected()
                if self.connection_kind(p) == "direct"]

    async def _dialback_addrs(self) -> list[bytes]:
        listen = [a for a in self._raw.get_addrs() if "/p2p-circuit" not in str(a)]
        out = []
        for addr in listen:
            with suppress(Exception):
                p2p = addr.value_for_protocol("p2p")
                addr = addr.decapsulate(multiaddr.Multiaddr(f"/p2p/{p2p}"))
            out.append(addr.to_bytes())
        # DCUtR's own guess at our public address: the IP peers see us at, with our listen
        # port (NATs usually keep the port of a flow that leaves from it).
        for raw in await self.dcutr._get_observed_addrs():
            if raw not in out:
                out.append(raw)
        return out

    async def _ask(self, server: str) -> None:
        try:
            status, _ = await self.autonat.query_server(
                ID.from_base58(server), addrs=await self._dialback_addrs(),
                timeout=QUERY_TIMEOUT_S)
        except Exception as exc:  # no answer is no verdict
            log.debug("AutoNAT query failed", extra={"peer": server, "error": str(exc)})
            return
        if status == AutoNATMessage.OK:
            self.votes.vote(server, True)
        elif status == AutoNATMessage.E_DIAL_ERROR:
            self.votes.vote(server, False)

    async def _autonat_loop(self) -> None:
        await trio.sleep(FIRST_CHECK_S)
        previous = self.reachability
        while True:
            servers = self._direct_peers()
            random.shuffle(servers)
            async with trio.open_nursery() as nursery:
                for server in servers[:SERVERS_PER_ROUND]:
                    nursery.start_soon(self._ask, server)
            if self.reachability != previous:
                log.info("reachability changed", extra={"from": previous,
                                                        "to": self.reachability,
                                                        **self.votes.counts()})
                previous = self.reachability
            decided = self.reachability in (PUBLIC, PRIVATE)
            await trio.sleep(CHECK_DECIDED_S if decided else CHECK_UNKNOWN_S)

    # ---- relay reservations ---------------------------------------------------------

    async def _reserve(self, relay: str) -> _Reservation | None:
        with trio.fail_after(RESERVE_TIMEOUT_S):
            stream = await self._raw.new_stream(ID.from_base58(relay), [HOP_PROTOCOL])
            try:
                await write_delimited_msg(stream, HopMessage(type=HopMessage.RESERVE))
                reply = await read_delimited_msg(stream, HopMessage)
            finally:
                with suppress(Exception):
                    await stream.close()
        if reply.type != HopMessage.STATUS or reply.status != Status.OK:
            return None
        offered = []
        for raw in list(reply.reservation.addrs)[:8]:
            with suppress(Exception):
                offered.append(str(multiaddr.Multiaddr(raw)))
        known = self.membership.table.get(relay)
        candidates = offered + list(known.addrs if known else ())
        addrs = []
        for addr in candidates:
            try:
                relayed = relayed_addr(addr, self.host.peer_id)
            except BootstrapError:
                continue  # itself relayed, or not a plain TCP address
            if "/ip4/127." not in addr and relayed not in addrs:
                addrs.append(relayed)
        expires = float(reply.reservation.expire) or time.time() + 3600
        return _Reservation(relay, expires, addrs[:2])

    def _relay_candidates(self, now: float) -> list[str]:
        store = self._raw.get_peerstore()
        out = []
        for peer in self._direct_peers():
            if peer in self.reservations or self._not_relays.get(peer, 0) > now:
                continue
            with suppress(Exception):
                protocols = store.get_protocols(ID.from_base58(peer))
                if protocols and HOP_PROTOCOL not in protocols:
                    continue  # identify says it does not relay
            out.append(peer)
        return out

    async def _relay_loop(self) -> None:
        while True:
            now = time.time()
            connected = self.membership.verified_connected()
            for relay, held in list(self.reservations.items()):
                # Renew at 80% of the reservation's life; drop it if the relay left.
                if relay not in connected or self.reachability == PUBLIC:
                    del self.reservations[relay]
                elif held.expires - now < 0.2 * 3600:
                    with suppress(Exception):
                        renewed = await self._reserve(relay)
                        if renewed is not None:
                            self.reservations[relay] = renewed
            if self.reachability == PRIVATE and len(self.reservations) < MAX_RELAYS:
                for relay in self._relay_candidates(now):
                    if len(self.reservations) >= MAX_RELAYS:
                        break
                    try:
                        slot = await self._reserve(relay)
                    except Exception as exc:  # not a relay, full, or gone
                        log.debug("no reservation", extra={"peer": relay, "error": str(exc)})
                        slot = None
                    if slot is None or not slot.addrs:
                        self._not_relays[relay] = now + RELAY_RETRY_S
                        continue
                    self.reservations[relay] = slot
                    log.info("reserved a relay slot", extra={"relay": relay,
                                                             "addrs": slot.addrs})
            self.host.set_relay_addrs([a for r in self.reservations.values() for a in r.addrs])
            await trio.sleep(5.0)

    # ---- hole punching --------------------------------------------------------------

    async def _punch(self, peer_id: str) -> None:
        self.hole_punches["attempted"] += 1
        peer = ID.from_base58(peer_id)
        # DCUtR gives up on a peer after three attempts until it reconnects; NAT state
        # changes, so this loop gives it a fresh budget every retry interval.
        self.dcutr._hole_punch_attempts.pop(peer, None)
        with trio.move_on_after(PUNCH_TIMEOUT_S):
            if await self.dcutr.initiate_hole_punch(peer):
                self.hole_punches["succeeded"] += 1
                log.info("hole punched: direct connection", extra={"peer": peer_id})

    async def _punch_loop(self) -> None:
        while True:
            await trio.sleep(self.config.hole_punch_retry_s)
            relayed = [p for p in self.membership.verified_connected()
                       if self.connection_kind(p) == "relayed"]
            async with trio.open_nursery() as nursery:
                for peer_id in relayed:
                    nursery.start_soon(self._punch, peer_id)


def _kind(conn: Any) -> str:
    try:
        if str(conn.get_connection_type().value) == "relayed":
            return "relayed"
    except Exception:
        pass
    try:
        addrs = conn.get_transport_addresses()
    except Exception:
        addrs = []
    return "relayed" if any("/p2p-circuit" in str(a) for a in addrs) else "direct"
