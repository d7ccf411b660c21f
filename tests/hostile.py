"""A hostile peer built from meshnode's own code, over any Host.

It speaks the project's real protocols, but as an attacker would: a valid hello (or a
malformed one) from a fresh key, A2A requests written frame by frame, a real TaskService
whose "agent" echoes every question back (the accomplice of a trust-farming Sybil pair).
The same class drives an :class:`~meshnode.node.inmemory.InMemoryHost` in the fast suites
and a real :class:`~meshnode.node.host.MeshHost` against real daemons in
tests/integration/test_hostile_peers.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from types import SimpleNamespace
from typing import Any

import trio

from meshnode.a2a.tasks import FORWARD_KEY, TaskService
from meshnode.node.inmemory import InMemoryMesh
from meshnode.node.membership import HELLO_PROTOCOL
from meshnode.node.streams import read_frame, write_frame
from meshnode.node.transport import DialError, Host, Stream
from protocols.a2a import (
    A2A_PROTOCOL,
    ErrorReply,
    Event,
    Message,
    Operation,
    Result,
    SendStreamingMessage,
    StreamEvent,
    TextPart,
    decode_response,
    encode_request,
)
from protocols.codec import FrameDecoder
from protocols.envelope import encode_envelope, seal
from protocols.peerid import Signer
from protocols.presence import HELLO, Hello
from protocols.records import new_record, record_to_json
from tests.inmemory import NET, identity


def question(text: str, **metadata: Any) -> Message:
    return Message(role="user", parts=(TextPart(text),), message_id=str(uuid.uuid4()),
                   metadata=metadata)


def forwarded(text: str, *, hops: int, visited: list[str]) -> Message:
    """A question carrying a forward marker whose hops and visited set the sender chose."""
    return question(text, **{FORWARD_KEY: {"hops": hops, "visited": visited}})


class Hostile:
    """One hostile identity on ``host`` (whose peer ID is ``signer``'s)."""

    def __init__(self, host: Host, signer: Signer, network_id: str, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.host = host
        self.signer = signer
        self.network_id = network_id
        self.clock = clock

    @property
    def peer_id(self) -> str:
        return self.signer.peer_id

    # ---- joining ------------------------------------------------------------------------

    def hello_frame(self, *, malformed: bool = False) -> bytes:
        if malformed:
            return b"\x92\xa5hello\xc0"  # a msgpack array, no envelope at all
        hello = Hello(addrs=tuple(self.host.listen_addrs()), version="hostile")
        return encode_envelope(seal(self.signer, self.network_id, HELLO, hello.to_body(),
                                    now=self.clock()))

    def answer_hellos(self, *, malformed: bool = False) -> None:
        """Answer the victim's own hello (it greets every new connection) like a member."""

        async def answer(stream: Stream) -> None:
            with suppress(trio.BrokenResourceError, trio.TooSlowError):  # it hung up on us
                await read_frame(stream, FrameDecoder(16 * 1024), timeout=10)
                await write_frame(stream, self.hello_frame(malformed=malformed), timeout=10)

        self.host.set_stream_handler(HELLO_PROTOCOL, answer)

    async def hello(self, peer: str, *, malformed: bool = False) -> bytes | None:
        """Send our hello to ``peer`` (a valid one, unless ``malformed``); its answer, or None
        if it closed the stream (or the connection: a bad hello gets us disconnected)."""
        try:
            async with self.host.open_stream(peer, HELLO_PROTOCOL, timeout=10) as stream:
                await write_frame(stream, self.hello_frame(malformed=malformed), timeout=10)
                return await read_frame(stream, FrameDecoder(16 * 1024), timeout=10)
        except (trio.BrokenResourceError, trio.TooSlowError, DialError):
            return None

    async def join(self, peer: str, addrs: list[str], *, malformed: bool = False) -> None:
        """Connect to ``peer`` and exchange hellos (the victim's greeting included)."""
        self.answer_hellos(malformed=malformed)
        await self.host.connect(peer, addrs, timeout=10)
        await self.hello(peer, malformed=malformed)

    # ---- A2A, frame by frame ---------------------------------------------------------

    async def request(self, peer: str, op: Operation, *, timeout: float = 30
                      ) -> Result | ErrorReply | None:
        """One A2A request; its reply, or None if the peer closed the stream unanswered."""
        async with self.host.open_stream(peer, A2A_PROTOCOL, timeout=10) as stream:
            try:
                await write_frame(stream, encode_request(str(uuid.uuid4()), op), timeout=10)
                frame = await read_frame(stream, FrameDecoder(), timeout=timeout)
            except trio.BrokenResourceError:  # refused: closed before or after our request
                return None
        if frame is None:
            return None
        reply = decode_response(frame)
        assert isinstance(reply, Result | ErrorReply), reply
        return reply

    async def stream_task(self, peer: str, message: Message, *, timeout: float = 60
                          ) -> list[StreamEvent] | ErrorReply | None:
        """A streaming task: its events, the error the peer answered, or None if refused."""
        events: list[StreamEvent] = []
        async with self.host.open_stream(peer, A2A_PROTOCOL, timeout=10) as stream:
            try:
                await write_frame(stream, encode_request("s1", SendStreamingMessage(message)),
                                  timeout=10)
            except trio.BrokenResourceError:
                return None
            decoder = FrameDecoder()
            with trio.fail_after(timeout):
                while True:
                    try:
                        frame = await read_frame(stream, decoder, timeout=timeout)
                    except trio.BrokenResourceError:
                        frame = None
                    if frame is None:
                        return events or None
                    reply = decode_response(frame)
                    if isinstance(reply, ErrorReply):
                        return reply
                    if not isinstance(reply, Event):
                        return events
                    events.append(reply.event)

    # ---- the accomplice --------------------------------------------------------------

    def serve_echo(self) -> TaskService:
        """Serve A2A with the project's TaskService, whose forwarder "answers" every
        question with a sentence about it that cites a record this identity signed and
        carries (so an asker's quality check scores it 1: the record exists, is on the
        question and supports the sentence)."""
        knowledge: Any = SimpleNamespace(signer=self.signer)
        service = TaskService(self.host, (), answerer=None,  # type: ignore[arg-type]
                              knowledge=knowledge, version="hostile")

        async def echo(text: str, *_: Any) -> dict[str, Any]:
            claim = f"The answer to {text.rstrip('?')} is forty two, say the accomplices."
            record = new_record(self.signer, collection="expert_knowledge",
                                tenant=self.network_id, text=claim, kind="note", agent="echo",
                                created=self.clock(), seq=1)
            return {"text": f"{claim} [1]", "agent": "echo", "peer": self.peer_id,
                    "citations": [{"id": record.id, "collection": record.collection}],
                    "records": [record_to_json(record)]}

        async def admit_all(_: str) -> bool:  # an accomplice serves whoever asks
            return True

        service.forwarder = echo
        service.serve(admit=admit_all)
        return service


async def start_hostile(nursery: trio.Nursery, mesh: InMemoryMesh, i: int) -> Hostile:
    """A hostile identity (the i-th of tests.inmemory's pool) on its own in-memory host."""
    signer = identity(i)
    host = mesh.host(signer.peer_id)

    async def run(*, task_status: trio.TaskStatus[None]) -> None:
        async with host:
            task_status.started()
            await trio.sleep_forever()

    await nursery.start(run)
    return Hostile(host, signer, NET, clock=mesh.clock)
