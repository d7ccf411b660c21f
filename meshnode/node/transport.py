"""The Host interface: what a node's services need of the network, and nothing more.

Services (membership, knowledge, trust, tasks, the asker) take a :class:`Host`, never a
py-libp2p object. Two implementations exist: :class:`meshnode.node.host.MeshHost` (py-libp2p:
TCP, Noise, yamux, GossipSub) and :class:`meshnode.node.inmemory.InMemoryHost` (trio memory
streams, for fast in-process tests). Both raise the errors defined here.

- **Streams**: ``open_stream`` (an async context manager yielding a :class:`Stream`) and
  ``set_stream_handler``; one handler per protocol name.
- **Gossip**: ``subscribe`` yields each :class:`GossipMessage`; a topic's validator runs on
  every message this node receives, before delivery and before forwarding, and a message it
  rejects goes no further; ``publish`` floods a message to the topic's subscribers.
- **Peers**: ``connect``/``disconnect``, ``connected_peers``, ``connection_events`` (one
  ``("connected" | "disconnected", peer_id)`` per change), ``ping``, ``listen_addrs``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from meshnode.errors import MeshnodeError


class TransportError(MeshnodeError):
    """The network could not do what a service asked of it."""


class DialError(TransportError):
    """A peer could not be reached: no connection, no usable address, protocol refused,
    or no answer in time (dialing, opening a stream, pinging)."""


class ProtocolNotSupported(DialError):
    """The peer is connected but answered that it does not speak the protocol asked for."""


class PublishError(TransportError):
    """A gossip message could not be published."""


class Stream(Protocol):
    """A bidirectional byte stream to one peer. ``read`` returns b"" at the end of the
    stream; a reset or broken connection raises trio.BrokenResourceError."""

    @property
    def peer_id(self) -> str: ...

    async def read(self, n: int) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


StreamHandler = Callable[[Stream], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class GossipMessage:
    """One gossip message as this node received it."""

    topic: str
    data: bytes
    #: The peer that published it (GossipSub signs messages, so this is not forgeable).
    origin: str
    #: The neighbour that delivered it to this node (this node itself for its own messages):
    #: the one to blame for an invalid message, since it chose to relay it.
    forwarder: str


#: Runs before a received message is delivered or forwarded: False drops it. Synchronous,
#: so that it cannot block the host's message pump; a validator that raises rejects.
Validator = Callable[[GossipMessage], bool]


class Host(Protocol):
    @property
    def peer_id(self) -> str: ...

    @property
    def connection_events(self) -> AsyncIterator[tuple[str, str]]:
        """("connected" | "disconnected", peer_id) per change; events past a full queue are
        dropped (consumers reconcile with ``connected_peers``)."""
        ...

    def listen_addrs(self) -> list[str]:
        """Addresses other nodes can dial, each ending in /p2p/<peer-id>."""
        ...

    def connected_peers(self) -> set[str]: ...

    async def connect(self, peer_id: str, addrs: list[str], *, timeout: float) -> None:
        """Raises DialError if no address of ``addrs`` leads to ``peer_id`` in time."""
        ...

    async def disconnect(self, peer_id: str) -> None:
        """Never raises: a peer already gone is disconnected."""
        ...

    async def ping(self, peer_id: str, *, timeout: float) -> float:
        """Round-trip time in milliseconds; DialError if the peer does not answer in time."""
        ...

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None: ...

    def open_stream(
        self, peer_id: str, protocol: str, *, timeout: float
    ) -> AbstractAsyncContextManager[Stream]:
        """A stream to ``peer_id`` speaking ``protocol``, closed on exit. A peer not connected
        is dialed at the addresses known for it; DialError if the stream cannot be opened."""
        ...

    async def subscribe(self, topic: str) -> AsyncIterator[GossipMessage]: ...

    def set_topic_validator(self, topic: str, validator: Validator) -> None: ...

    async def publish(self, topic: str, data: bytes) -> None:
        """Raises PublishError if the message cannot be sent."""
        ...

    def topic_peers(self, topic: str) -> int:
        """How many connected peers are subscribed to ``topic``."""
        ...
