"""A2A over ``/meshnode/a2a/1.1.0`` sessions: one long-lived stream per peer, requests
pipelined on it (the rules are :mod:`protocols.a2a.session`'s; this module does the I/O).

- :class:`SessionServer` serves sessions: each request goes to the task service's own
  per-request dispatch, exactly as on a 1.0 stream, with a reply object in place of the
  stream; a cancel frame cancels that request's work. It is held to the same rules as a
  1.0 stream: a session opens only for a peer the task service admits (a verified hello),
  its tasks belong to the session's peer, and each request takes what a 1.0 stream would
  from the peer's budgets (a token of the A2A request rate, one of its A2A streams while
  it runs): more requests than a peer could make as streams are refused as BUSY.
- :class:`A2AClient` is how this node calls other nodes' agents: over the peer's session
  (opened on first use, kept while used, closed after ``IDLE_S``), or, for a peer that does
  not speak 1.1, over one 1.0 stream per call (:func:`meshnode.a2a.tasks.call_agent`).
  A session opened over a relayed connection is replaced once a direct connection to the
  peer exists (hole punching): its stream would otherwise stay on the relay for as long as
  it lives.

Frames are written by one writer per session, which sends everything queued since its last
write in one go: the four events of a quick task, or the requests of many callers, leave
in one encrypted write.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from contextlib import suppress

import trio

from meshnode.a2a.lifecycle import Emit
from meshnode.a2a.tasks import PeerBusy, TaskService, call_agent
from meshnode.node.limits import PeerLimits, short_name
from meshnode.node.transport import Host, ProtocolNotSupported, Stream
from protocols.a2a import (
    A2A_PROTOCOL,
    BUSY,
    INTERNAL_ERROR,
    A2AError,
    ErrorReply,
    Event,
    Message,
    SendStreamingMessage,
    TaskStatusUpdateEvent,
    encode_error,
)
from protocols.a2a.frames import Response
from protocols.a2a.session import (
    MAX_IN_FLIGHT,
    SESSION_PROTOCOL,
    Cancelled,
    ClientSession,
    NewRequest,
    ServerSession,
)
from protocols.codec import encode_frame
from protocols.errors import ProtocolError

log = logging.getLogger(__name__)
READ_SIZE = 64 * 1024
WRITE_TIMEOUT_S = 10.0
#: A session with nothing in flight for this long is closed (the peer's too).
IDLE_S = 120.0
#: A peer that does not speak 1.1 is asked over 1.0 for this long before trying again.
LEGACY_S = 600.0
#: Replies one request may have queued unread before it is given up.
REPLIES_QUEUED = 64
#: Unsent bytes past which a writer makes whoever adds more wait.
MAX_UNSENT = 1 << 20
#: How a session's stream fails (or is found to carry garbage).
_STREAM_ERRORS = (ProtocolError, trio.TooSlowError, trio.BrokenResourceError,
                  trio.ClosedResourceError)


class _Writer:
    """Writes what a session has queued, everything since the last write in one write."""

    def __init__(self, stream: Stream, take: Callable[[], bytes],
                 unsent: Callable[[], int]) -> None:
        self._stream = stream
        self._take = take
        self._unsent = unsent
        self._lock = trio.Lock()
        self._wake = trio.Event()
        self._drained = trio.Event()

    def kick(self) -> None:
        self._wake.set()

    async def room(self) -> None:
        """Wait while too much is queued (the peer reads slowly)."""
        while self._unsent() > MAX_UNSENT:
            self.kick()
            await self._drained.wait()

    async def flush(self) -> None:
        """Write whatever is queued now."""
        async with self._lock:
            data = self._take()
            if data:
                with trio.fail_after(WRITE_TIMEOUT_S):
                    await self._stream.write(data)
        self._drained.set()
        self._drained = trio.Event()

    async def run(self, session_scope: trio.CancelScope) -> None:
        """Write until cancelled; a write that fails ends the whole session."""
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                await self.flush()
        except _STREAM_ERRORS as exc:
            log.debug("a2a session write failed", extra={"error": str(exc) or repr(exc)})
            session_scope.cancel()


# ---- serving ---------------------------------------------------------------------------


class _Reply:
    """One request of a session, as the stream the task service's dispatch writes to."""

    def __init__(self, peer_id: str, request_id: str, session: ServerSession,
                 writer: _Writer) -> None:
        self._peer_id = peer_id
        self._request_id = request_id
        self._session = session
        self._writer = writer

    @property
    def peer_id(self) -> str:
        return self._peer_id

    async def write(self, data: bytes) -> None:
        await self._writer.room()
        if not self._session.is_live(self._request_id):
            raise trio.BrokenResourceError("the request was cancelled")
        self._session.send(self._request_id, data)
        self._writer.kick()

    async def read(self, n: int) -> bytes:
        return b""  # a request's frame came through the session; nothing more to read

    async def close(self) -> None:
        pass


class SessionServer:
    """Serves ``tasks``' agents over sessions, within ``limits`` (the same budgets as the
    1.0 streams that ``tasks`` serves through a LimitedHost)."""

    def __init__(self, tasks: TaskService, limits: PeerLimits) -> None:
        self.tasks = tasks
        self.limits = limits
        self._rate = limits.stream_rates()[A2A_PROTOCOL]
        self.sessions = 0
        self.requests = 0

    def serve(self) -> None:
        """Serve sessions (after ``tasks.serve``, which says whom to admit)."""
        self.tasks.host.set_stream_handler(SESSION_PROTOCOL, self._serve)

    async def _serve(self, stream: Stream) -> None:
        if not await self.tasks.admits(stream.peer_id):
            log.info("a2a session refused: peer not admitted", extra={"peer": stream.peer_id})
            return
        session = ServerSession()
        writer = _Writer(stream, session.data_to_send, lambda: session.pending)
        scopes: dict[str, trio.CancelScope] = {}
        self.sessions += 1
        async with trio.open_nursery() as outer:
            outer.start_soon(writer.run, outer.cancel_scope)
            async with trio.open_nursery() as requests:
                try:
                    await self._read(stream, session, writer, scopes, requests)
                except _STREAM_ERRORS as exc:
                    log.debug("a2a session ended", extra={
                        "peer": stream.peer_id, "error": str(exc) or type(exc).__name__})
                    requests.cancel_scope.cancel()  # no one is left to answer
            # The asker closed its side: what was in flight is answered; send the rest.
            with suppress(*_STREAM_ERRORS):
                await writer.flush()
            outer.cancel_scope.cancel()

    async def _read(self, stream: Stream, session: ServerSession, writer: _Writer,
                    scopes: dict[str, trio.CancelScope], requests: trio.Nursery) -> None:
        while True:
            with trio.move_on_after(IDLE_S) as idle:
                data = await stream.read(READ_SIZE)
            if idle.cancelled_caught:
                if session.in_flight:
                    continue
                return
            if not data:
                return
            for event in session.receive_data(data):
                if isinstance(event, NewRequest):
                    self.requests += 1
                    scopes[event.request_id] = trio.CancelScope()
                    requests.start_soon(self._one, stream.peer_id, event, session, writer,
                                        scopes)
                elif isinstance(event, Cancelled) and event.request_id in scopes:
                    scopes[event.request_id].cancel()
            writer.kick()  # requests refused at once

    def _budget(self, peer_id: str) -> str | None:
        """Take what a 1.0 stream would from ``peer_id``'s budgets: None if it had it (then
        ``limits.close_stream`` must follow), else the reason for refusing."""
        name = short_name(A2A_PROTOCOL)
        if not self.limits.take(peer_id, A2A_PROTOCOL, *self._rate):
            return f"rate:{name}"
        if not self.limits.open_stream(peer_id, A2A_PROTOCOL):
            return f"streams:{name}"
        return None

    async def _one(self, peer_id: str, request: NewRequest, session: ServerSession,
                   writer: _Writer, scopes: dict[str, trio.CancelScope]) -> None:
        request_id = request.request_id
        reply = _Reply(peer_id, request_id, session, writer)
        refused = self._budget(peer_id)
        try:
            if refused is not None:
                self.limits.refuse(peer_id, refused)
                session.send(request_id, encode_frame(encode_error(
                    request_id, BUSY, f"over this peer's budget ({refused})")))
                return
            with scopes[request_id]:
                try:
                    # The dispatch of a 1.0 stream: the task belongs to the session's peer.
                    await self.tasks._dispatch(reply, request_id, request.op)
                except A2AError as exc:
                    session.send(request_id, encode_frame(encode_error(
                        request_id, exc.code, exc.message)))
                except (trio.TooSlowError, trio.BrokenResourceError):
                    pass  # cancelled, or the session is going: no one to tell
                except Exception as exc:  # one request's fault fails that request only
                    self.tasks.store.faults.record("a2a session", exc, peer=peer_id)
                    session.send(request_id, encode_frame(encode_error(
                        request_id, INTERNAL_ERROR, "internal error")))
        finally:
            if refused is None:
                self.limits.close_stream(peer_id, A2A_PROTOCOL)
            scopes.pop(request_id, None)
            session.finish(request_id)
            writer.kick()


# ---- calling ---------------------------------------------------------------------------


class _Session:
    def __init__(self, peer_id: str, stream: Stream, kind: str | None) -> None:
        self.peer_id = peer_id
        #: The kind of connection to the peer when the session was opened (see A2AClient).
        self.kind = kind
        self.proto = ClientSession()
        self.writer = _Writer(stream, self.proto.data_to_send, lambda: self.proto.pending)
        self._stream = stream
        self._waiting: dict[str, trio.MemorySendChannel[Response]] = {}
        self._slots = trio.Semaphore(MAX_IN_FLIGHT)
        self._ids = itertools.count(1)
        self.closed = False
        self.last_used = trio.current_time()
        self._scope = trio.CancelScope()

    def retire(self) -> None:
        """Take no new calls; close once the calls in flight are done."""
        self.closed = True
        if not self._waiting:
            self._scope.cancel()

    async def run(self) -> None:
        try:
            with self._scope:
                await self._run()
        finally:
            self.closed = True
            for channel in self._waiting.values():
                channel.close()  # every caller waiting learns the session is gone

    async def _run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.writer.run, nursery.cancel_scope)
            nursery.start_soon(self._idle, nursery.cancel_scope)
            try:
                await self._read()
            except _STREAM_ERRORS as exc:
                log.debug("a2a session lost", extra={"peer": self.peer_id,
                                                     "error": str(exc) or repr(exc)})
            nursery.cancel_scope.cancel()

    async def _idle(self, scope: trio.CancelScope) -> None:
        while True:
            await trio.sleep(IDLE_S / 4)
            if not self._waiting and trio.current_time() - self.last_used > IDLE_S:
                scope.cancel()
                return

    async def _read(self) -> None:
        while data := await self._stream.read(READ_SIZE):
            for reply in self.proto.receive_data(data):
                channel = self._waiting.get(reply.request_id)
                if channel is None:
                    continue
                try:
                    channel.send_nowait(reply)
                except trio.WouldBlock:  # a caller not keeping up: it is given up
                    self.proto.cancel(reply.request_id)
                    channel.close()
                    self.writer.kick()

    async def call(self, message: Message, on_event: Emit) -> None:
        async with self._slots:
            if self.closed:
                raise trio.BrokenResourceError("the a2a session is closed")
            request_id = str(next(self._ids))
            send, receive = trio.open_memory_channel[Response](REPLIES_QUEUED)
            self._waiting[request_id] = send
            self.last_used = trio.current_time()
            try:
                self.proto.request(request_id, SendStreamingMessage(message))
                self.writer.kick()
                async for reply in receive:
                    if isinstance(reply, Event):
                        await on_event(reply.event)
                        if isinstance(reply.event, TaskStatusUpdateEvent) and reply.event.final:
                            return
                    elif isinstance(reply, ErrorReply) and reply.code == BUSY:
                        raise PeerBusy(f"busy: {reply.message}")
                    elif isinstance(reply, ErrorReply):
                        raise ProtocolError(f"error {reply.code}: {reply.message}")
                    else:  # End, or a Result
                        return
                raise trio.BrokenResourceError("the agent's node closed the session")
            finally:
                self._waiting.pop(request_id, None)
                self.proto.cancel(request_id)  # a no-op if it is over
                self.writer.kick()
                self.last_used = trio.current_time()
                if self.closed and not self._waiting:
                    self._scope.cancel()  # retired: the last call is done


class A2AClient:
    def __init__(self, host: Host, *, clock: Callable[[], float] = trio.current_time) -> None:
        self.host = host
        self._clock = clock
        #: "direct" or "relayed" (or None: unknown) for a connected peer; set by the node
        #: once NAT traversal runs.
        self.connection_kind: Callable[[str], str | None] = lambda _peer: None
        self._sessions: dict[str, _Session] = {}
        self._opening: dict[str, trio.Lock] = {}
        self._legacy: dict[str, float] = {}
        self._nursery: trio.Nursery | None = None
        #: Calls by path (session, stream).
        self.calls = {"session": 0, "stream": 0}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None

    async def _run_session(self, peer_id: str, *,
                           task_status: trio.TaskStatus[_Session]) -> None:
        try:
            kind = self.connection_kind(peer_id)
            async with self.host.open_stream(peer_id, SESSION_PROTOCOL, timeout=10) as stream:
                session = self._sessions[peer_id] = _Session(peer_id, stream, kind)
                task_status.started(session)
                await session.run()
        finally:
            if self._sessions.get(peer_id) is not None and self._sessions[peer_id].closed:
                del self._sessions[peer_id]

    async def _session(self, peer_id: str) -> _Session | None:
        """The open session to ``peer_id`` (opened now if need be); None if the peer speaks
        only 1.0 (or this client is not running)."""
        if self._nursery is None or self._legacy.get(peer_id, 0.0) > self._clock():
            return None
        session = self._sessions.get(peer_id)
        if session is not None and session.kind == "relayed" \
                and self.connection_kind(peer_id) == "direct":
            session.retire()  # hole punched: the next session goes the direct way
        if session is not None and not session.closed:
            return session
        lock = self._opening.setdefault(peer_id, trio.Lock())
        async with lock:
            session = self._sessions.get(peer_id)
            if session is not None and not session.closed:
                return session
            try:
                started: _Session = await self._nursery.start(self._run_session, peer_id)
            except ProtocolNotSupported:
                self._legacy[peer_id] = self._clock() + LEGACY_S
                return None
            finally:
                if not lock.statistics().tasks_waiting:
                    self._opening.pop(peer_id, None)
            return started

    async def call(self, peer_id: str, message: Message, on_event: Emit, *,
                   timeout: float) -> None:
        """:func:`meshnode.a2a.tasks.call_agent`'s contract, over a session when possible."""
        with trio.fail_after(timeout):
            session = await self._session(peer_id)
            if session is None:
                self.calls["stream"] += 1
                await call_agent(self.host, peer_id, message, on_event, timeout=timeout)
                return
            self.calls["session"] += 1
            await session.call(message, on_event)
