"""TrustService: this node's trust graph, its signed attestations, and their gossip.

The graph (meshnode.trust.graph) holds this node's own evidence and the latest attestation of
each other node. This service publishes our local trust vector, signed, on the network's
trust topic every ``trust.publish_interval_s``; verifies and keeps others'; recomputes
global trust every ``trust.recompute_interval_s``; and saves the graph in the node home so
that trust survives restarts.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import trio

from bootstrap import parse_bootstrap
from meshnode.config import NodeConfig
from meshnode.node.host import MeshHost
from meshnode.trust.graph import Outcome, TrustGraph
from protocols.envelope import Envelope, EnvelopeGuard, decode_envelope, encode_envelope, seal
from protocols.errors import BadSignature, DecodeError, ProtocolError
from protocols.peerid import Signer
from protocols.presence import topic
from protocols.trust import MAX_TRUST_SIZE, TRUST, TrustAttestation, attestation_from_envelope

log = logging.getLogger(__name__)
TRUST_FILE = "trust.json"


def pre_trusted_peers(config: NodeConfig, self_id: str) -> set[str]:
    """The configured anchors, else this node's bootstrap peers, and always itself."""
    peers = set(config.trust.pre_trusted) or {parse_bootstrap(a).peer_id for a in config.bootstrap}
    return peers | {self_id}


class TrustService:
    def __init__(self, config: NodeConfig, host: MeshHost, signer: Signer) -> None:
        self.config = config
        self.host = host
        self.signer = signer
        self._path = Path(config.home) / TRUST_FILE
        self.graph = TrustGraph.load(self._path, self_id=signer.peer_id,
                                     pre_trusted=pre_trusted_peers(config, signer.peer_id))
        self.graph.compute_global()
        self._guard = EnvelopeGuard(config.network_id, max_age_s=600.0)
        self._topic = topic(config.network_id, "trust")
        self.rejected = 0
        self.accepted = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.host.set_topic_validator(self._topic, self._validate)
        subscription = await self.host.subscribe(self._topic)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._listen, subscription)
                nursery.start_soon(self._publish_loop)
                nursery.start_soon(self._recompute_loop)
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):
                await self._save()

    def _decode(self, data: bytes) -> tuple[Envelope, TrustAttestation]:
        env = decode_envelope(data, max_size=MAX_TRUST_SIZE + 1024)
        self._guard.check(env, time.time())
        if env.type != TRUST:
            raise ProtocolError(f"unexpected {env.type!r} on the trust topic")
        return env, attestation_from_envelope(env)

    def _validate(self, forwarder: Any, message: Any) -> bool:
        try:
            self._decode(message.data)
        except ProtocolError as exc:
            self.bad_message(str(forwarder), exc)
            return False
        return True

    def bad_message(self, peer_id: str, exc: ProtocolError) -> None:
        """Evidence against the peer that delivered a malformed or badly signed message; a
        stale or replayed one may have been relayed in good faith and does not count."""
        if isinstance(exc, BadSignature):
            self.graph.record(peer_id, Outcome.BAD_SIGNATURE, now=time.time())
        elif isinstance(exc, DecodeError):
            self.graph.record(peer_id, Outcome.MALFORMED, now=time.time())

    async def _listen(self, subscription: Any) -> None:
        while True:
            message = await subscription.get()
            try:
                env, attestation = self._decode(message.data)
                if env.sender == self.signer.peer_id:
                    continue
                self._guard.admit(env, time.time())
            except ProtocolError as exc:
                self.rejected += 1
                log.debug("attestation rejected", extra={"reason": str(exc)})
                continue
            self.accepted += 1
            self.graph.accept_attestation(attestation, time.time())

    async def publish(self) -> None:
        now = time.time()
        body = self.graph.attestation(now).to_body()
        env = seal(self.signer, self.config.network_id, TRUST, body, now=now)
        try:
            await self.host.publish(self._topic, encode_envelope(env))
        except Exception as exc:  # py-libp2p's publish raises assorted errors
            log.warning("trust publish failed", extra={"error": str(exc)})

    async def _publish_loop(self) -> None:
        while True:
            await trio.sleep(self.config.trust.publish_interval_s)
            await self.publish()

    async def _recompute_loop(self) -> None:
        while True:
            await trio.sleep(self.config.trust.recompute_interval_s)
            self.graph.compute_global()
            await self._save()

    async def _save(self) -> None:
        try:
            await trio.to_thread.run_sync(self.graph.save, self._path)
        except OSError as exc:
            log.warning("could not save trust", extra={"path": str(self._path),
                                                       "error": str(exc)})

    def snapshot(self) -> dict[str, Any]:
        return {**self.graph.snapshot(), "attestations_rejected": self.rejected}
