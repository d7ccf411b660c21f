"""TrustService: this node's trust graph, its signed attestations, and their gossip.

The graph (meshnode.trust.graph) holds this node's own evidence and the latest attestation of
each other node. This service publishes our local trust vector, signed, on the network's
trust topic when it changed (checked every ``trust.publish_interval_s``) and otherwise once a
refresh interval (REFRESH_S, stretched in a large mesh); verifies and keeps others'; recomputes
global trust every ``trust.recompute_interval_s``; and saves the graph in the node home so
that trust survives restarts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from meshnode.config import NodeConfig
from meshnode.node.topics import EnvelopeCodec, Signed, SignedTopic
from meshnode.node.transport import GossipMessage, Host
from meshnode.trust.evidence import Outcome
from meshnode.trust.graph import TrustGraph
from protocols.envelope import EnvelopeGuard
from protocols.errors import BadSignature, DecodeError, ProtocolError
from protocols.peerid import Signer
from protocols.presence import refresh_interval, topic
from protocols.trust import MAX_TRUST_SIZE, TRUST, TrustAttestation, attestation_from_envelope

log = logging.getLogger(__name__)
TRUST_FILE = "trust.json"
#: An unchanged trust vector is published again after this long (at least).
REFRESH_S = 300.0


def pre_trusted_peers(config: NodeConfig, self_id: str) -> set[str]:
    """The anchors of global trust: this node itself and the peers its operator listed in
    ``trust.pre_trusted``. Never the bootstrap peers for being bootstrap peers: a hostile
    one would own a newcomer's trust and could hand it to its Sybils."""
    return set(config.trust.pre_trusted) | {self_id}


class TrustService:
    def __init__(
        self,
        config: NodeConfig,
        host: Host,
        signer: Signer,
        *,
        clock: Callable[[], float] = time.time,
        mesh_size: Callable[[], int] = lambda: 1,
        on_bad: Callable[[str, ProtocolError], None] | None = None,
    ) -> None:
        self.config = config
        #: How many nodes the mesh has, as far as this node knows (scales the refresh).
        self.mesh_size = mesh_size
        self._joined = False
        self.host = host
        self.signer = signer
        self._clock = clock
        self._path = Path(config.home) / TRUST_FILE
        self.graph = TrustGraph.load(self._path, self_id=signer.peer_id,
                                     pre_trusted=pre_trusted_peers(config, signer.peer_id),
                                     max_peers=config.trust.max_peers)
        self.graph.compute_global()
        self._saved = ""
        self._codec = EnvelopeCodec(EnvelopeGuard(config.network_id, max_age_s=600.0), TRUST,
                                    attestation_from_envelope, max_size=MAX_TRUST_SIZE + 1024,
                                    clock=clock)
        self.topic = SignedTopic(host, topic(config.network_id, "trust"), self._codec,
                                 self_id=signer.peer_id,
                                 # The node reports bad gossip of every topic in one place
                                 # (Membership.report_bad_message), which calls bad_message.
                                 on_bad=on_bad or self.bad_message)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.topic.run, self._on_attestation)
                nursery.start_soon(self._publish_loop)
                nursery.start_soon(self._recompute_loop)
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):
                await self._save()

    def bad_message(self, peer_id: str, exc: ProtocolError) -> None:
        """Evidence against the peer that delivered a malformed or badly signed message; a
        stale or replayed one may have been relayed in good faith and does not count."""
        if isinstance(exc, BadSignature):
            self.graph.record(peer_id, Outcome.BAD_SIGNATURE, now=self._clock())
        elif isinstance(exc, DecodeError):
            self.graph.record(peer_id, Outcome.MALFORMED, now=self._clock())

    def refused(self, peer_id: str, reason: str) -> None:
        """Evidence against a peer that went over one of this node's budgets."""
        self.graph.record(peer_id, Outcome.REFUSED, now=self._clock())

    @property
    def rejected(self) -> int:
        return self.topic.rejected_total

    @property
    def accepted(self) -> int:
        return self.topic.accepted

    async def _on_attestation(
        self, message: GossipMessage, signed: Signed[TrustAttestation]
    ) -> None:
        self.graph.accept_attestation(signed.value, self._clock())

    async def publish(self) -> None:
        body = self.graph.attestation(self._clock()).to_body()
        await self.topic.publish(self._codec.seal(self.signer, body))

    def refresh_s(self) -> float:
        """How often an unchanged vector is published again (for nodes that joined since):
        stretched in a large mesh like presence, so its mesh-wide rate stays bounded."""
        return refresh_interval(REFRESH_S, self.mesh_size(),
                                self.config.gossip.presence_rate_per_s)

    def peer_joined(self, peer_id: str) -> None:
        """A peer completed its handshake with this node: it may have joined the mesh just
        now and would otherwise wait a whole refresh for this node's vector."""
        self._joined = True

    async def _publish_loop(self) -> None:
        # Checked every publish interval, published when it changed or a neighbour joined:
        # an idle mesh whose trust does not move sends almost nothing.
        published: dict[str, float] | None = None
        published_at = -float("inf")
        while True:
            await trio.sleep(self.config.trust.publish_interval_s)
            scores = self.graph.local_trust()
            now = trio.current_time()
            if scores != published or self._joined or now - published_at >= self.refresh_s():
                self._joined = False
                await self.publish()
                published, published_at = scores, now

    async def _recompute_loop(self) -> None:
        while True:
            await trio.sleep(self.config.trust.recompute_interval_s)
            self.graph.compute_global()
            await self._save()

    async def _save(self) -> None:
        # Unchanged state is not written again: every write is two fsyncs, every few seconds.
        state = self.graph.dumps()
        if state == self._saved:
            return
        try:
            await trio.to_thread.run_sync(self.graph.save, self._path, state)
        except OSError as exc:
            log.warning("could not save trust", extra={"path": str(self._path),
                                                       "error": str(exc)})
        else:
            self._saved = state

    def snapshot(self) -> dict[str, Any]:
        return {**self.graph.snapshot(), "attestations_rejected": self.rejected,
                "attestations": self.topic.stats()}
