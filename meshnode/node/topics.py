"""SignedTopic: one gossip topic whose messages are signed by their authors.

Presence, trust attestations and knowledge announcements share one shape, written here once:

- **validate** (runs on every received message, before delivery and forwarding): decode and
  check the message (signature, network, freshness, type); a message that fails goes no
  further, and the neighbour that relayed it is reported (``on_bad``).
- **listen**: for each delivered message that is not this node's own, take what validation
  decoded (kept briefly by the hash of the bytes, so an expensive check such as a trust
  attestation of 1024 peers runs once, not twice; decoded again only if it was not kept),
  *admit* it (replay check), and hand it to the service. A message whose handling raises is
  logged and counted; it never stops the listener. Cancellation always passes through.
- **publish**: failures are logged, not raised: a periodic message is sent again anyway.
- **counts**: accepted, rejected per reason (the error's class name), and failed.

A topic may also *screen* each message in validation, with its gossip context (origin,
forwarder): budgets that must stop a message before it is relayed (see
:mod:`meshnode.node.admission`). What validation decoded is kept until the listener takes
it, so a message's signature is checked once, not twice.

What differs per topic is a :class:`TopicCodec`; :class:`EnvelopeCodec` covers every topic
carrying :mod:`protocols.envelope` envelopes.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import trio

from meshnode.node.transport import GossipMessage, Host, PublishError
from protocols.envelope import Envelope, EnvelopeGuard, decode_envelope, encode_envelope, seal
from protocols.errors import ProtocolError
from protocols.peerid import Signer

log = logging.getLogger(__name__)
T = TypeVar("T")
V = TypeVar("V")
#: The reason counted when a validator or handler fails in a way no check foresaw.
ERROR = "error"


class TopicCodec(Protocol[T]):
    def decode(self, data: bytes) -> tuple[str, T]:
        """(author, message) of checked bytes; ProtocolError if they are unacceptable."""
        ...

    def admit(self, item: T) -> None:
        """Called once per delivered message before it is handled; ProtocolError drops it
        (for example a replay: validation alone cannot remember what it saw)."""
        ...


@dataclass(frozen=True, slots=True)
class Signed(Generic[V]):
    """An envelope and what its body decoded to."""

    envelope: Envelope
    value: V


class EnvelopeCodec(Generic[V]):
    """Signed envelopes of one type (or a few): decode (signature checked), network and
    freshness by ``guard``, the type, then the body by ``parse``."""

    def __init__(
        self,
        guard: EnvelopeGuard,
        type_: str | tuple[str, ...],
        parse: Callable[[Envelope], V],
        *,
        max_size: int,
        clock: Callable[[], float],
    ) -> None:
        self.guard = guard
        self.types = (type_,) if isinstance(type_, str) else type_
        self.type = self.types[0]
        self._parse = parse
        self._max_size = max_size
        self._clock = clock

    def decode(self, data: bytes) -> tuple[str, Signed[V]]:
        env = decode_envelope(data, max_size=self._max_size)
        self.guard.check(env, self._clock())
        if env.type not in self.types:
            raise ProtocolError(f"unexpected {env.type!r} on the {self.type} topic")
        return env.sender, Signed(env, self._parse(env))

    def admit(self, item: Signed[V]) -> None:
        self.guard.admit(item.envelope, self._clock())

    def seal(self, signer: Signer, body: Any, type_: str | None = None) -> bytes:
        now = self._clock()
        return encode_envelope(seal(signer, self.guard.network_id, type_ or self.type, body,
                                    now=now))


def _ignore_bad(peer_id: str, exc: ProtocolError) -> None:
    pass


#: Messages decoded in validation and not yet taken by the listener, at most this many and
#: this many bytes (a message validated and then dropped by the host, e.g. by a full
#: subscription, is never taken).
_DECODED_KEPT = 256
_DECODED_BYTES = 4 << 20


class SignedTopic(Generic[T]):
    def __init__(
        self,
        host: Host,
        topic: str,
        codec: TopicCodec[T],
        *,
        self_id: str,
        on_bad: Callable[[str, ProtocolError], None] = _ignore_bad,
        screen: Callable[[GossipMessage, str, T], None] | None = None,
    ) -> None:
        self.host = host
        #: (message, author, item) -> None, or ProtocolError to drop the message here.
        self.screen = screen
        self._decoded: OrderedDict[bytes, tuple[str, T]] = OrderedDict()
        self._decoded_bytes = 0
        self.topic = topic
        self.codec = codec
        self.self_id = self_id
        self._on_bad = on_bad
        self.accepted = 0
        self.failed = 0
        self.rejected: Counter[str] = Counter()

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def stats(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "rejected": dict(self.rejected),
                "failed": self.failed}

    def validate(self, message: GossipMessage) -> bool:
        if message.forwarder == self.self_id and message.origin == self.self_id:
            # This node's own publication (no neighbour can deliver as this node): it was
            # checked when it was made, and a batch of records is costly to verify again.
            return True
        try:
            author, item = self.codec.decode(message.data)
            if self.screen is not None and message.origin != self.self_id:
                self.screen(message, author, item)
        except ProtocolError as exc:
            self.rejected[type(exc).__name__] += 1
            log.debug("gossip rejected", extra={"topic": self.topic, "peer": message.forwarder,
                                                "reason": str(exc)})
            self._on_bad(message.forwarder, exc)
            return False
        except Exception:  # a decoder bug must not let the message through, nor crash
            self.rejected[ERROR] += 1
            log.exception("gossip validation failed", extra={"topic": self.topic})
            return False
        if message.data not in self._decoded:
            self._decoded[message.data] = (author, item)
            self._decoded_bytes += len(message.data)
        while self._decoded and (len(self._decoded) > _DECODED_KEPT
                                 or self._decoded_bytes > _DECODED_BYTES):
            self._decoded_bytes -= len(self._decoded.popitem(last=False)[0])
        return True

    def _decode(self, data: bytes) -> tuple[str, T]:
        decoded = self._decoded.pop(data, None)
        if decoded is None:
            return self.codec.decode(data)
        self._decoded_bytes -= len(data)
        return decoded

    async def run(
        self,
        handle: Callable[[GossipMessage, T], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Validate, subscribe, then hand every admitted message to ``handle`` until
        cancelled. ``handle`` may raise ProtocolError to reject a message."""
        self.host.set_topic_validator(self.topic, self.validate)
        messages = await self.host.subscribe(self.topic)
        task_status.started()
        await self._listen(messages, handle)

    async def _listen(
        self,
        messages: AsyncIterator[GossipMessage],
        handle: Callable[[GossipMessage, T], Awaitable[None]],
    ) -> None:
        async for message in messages:
            if message.origin == self.self_id:
                continue
            try:
                author, item = self._decode(message.data)
                if author == self.self_id:
                    continue  # our own message, republished by someone else
                self.codec.admit(item)
                await handle(message, item)
            except ProtocolError as exc:
                self.rejected[type(exc).__name__] += 1
                log.debug("gossip rejected", extra={"topic": self.topic,
                                                    "peer": message.origin, "reason": str(exc)})
            except Exception:  # one message's fault costs that message, never the listener
                self.failed += 1
                log.exception("gossip message failed", extra={"topic": self.topic,
                                                              "peer": message.origin})
            else:
                self.accepted += 1

    async def publish(self, data: bytes) -> bool:
        try:
            await self.host.publish(self.topic, data)
        except PublishError as exc:
            log.warning("gossip publish failed", extra={"topic": self.topic, "error": str(exc)})
            return False
        return True
