"""SignedTopic: decode, guard, validate, listen, count, and contain faults per message."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import trio
import trio.testing

from meshnode.node.inmemory import InMemoryHost, InMemoryMesh
from meshnode.node.topics import EnvelopeCodec, Signed, SignedTopic
from meshnode.node.transport import GossipMessage
from protocols.envelope import Envelope, EnvelopeGuard, encode_envelope, seal
from protocols.errors import ProtocolError
from tests.inmemory import eventually, identity, no_faults

NET = "dev-support"
TOPIC = "dev-support/notes"
NOTE = "note"
ALICE, BOB, CAROL, MALLORY = identity(1), identity(2), identity(3), identity(4)


def _body(env: Envelope) -> Any:
    return env.decoded_body()


@dataclass
class Listener:
    """One node's SignedTopic for notes, and what it was handed."""

    host: InMemoryHost
    topic: SignedTopic[Signed[Any]]
    codec: EnvelopeCodec[Any]
    handled: list[Any]
    blamed: list[tuple[str, str]]


async def _listener(
    nursery: trio.Nursery, mesh: InMemoryMesh, signer_index: int,
    handle: Callable[[Listener, Signed[Any]], Awaitable[None]] | None = None,
) -> Listener:
    signer = identity(signer_index)
    host = mesh.host(signer.peer_id)
    codec = EnvelopeCodec(EnvelopeGuard(NET), NOTE, _body, max_size=4096, clock=mesh.clock)
    blamed: list[tuple[str, str]] = []
    topic = SignedTopic(host, TOPIC, codec, self_id=signer.peer_id,
                        on_bad=lambda peer, exc: blamed.append((peer, type(exc).__name__)))
    listener = Listener(host, topic, codec, [], blamed)

    async def record(message: GossipMessage, signed: Signed[Any]) -> None:
        if handle is not None:
            await handle(listener, signed)
        listener.handled.append(signed.value)

    async def run(*, task_status: trio.TaskStatus[None]) -> None:
        async with host:
            await topic.run(record, task_status=task_status)

    await nursery.start(run)
    return listener


async def _line(nursery: trio.Nursery, handle: Any = None) -> tuple[InMemoryMesh, Listener,
                                                                   Listener, Listener]:
    """alice - bob - carol; alice and carol cannot connect."""
    mesh = InMemoryMesh()
    alice, bob, carol = [await _listener(nursery, mesh, i, handle) for i in (1, 2, 3)]
    mesh.cut(alice.host.peer_id, carol.host.peer_id)
    for a, b in ((alice, bob), (bob, carol)):
        await a.host.connect(b.host.peer_id, b.host.listen_addrs(), timeout=1)
    return mesh, alice, bob, carol


async def _intruder(nursery: trio.Nursery, mesh: InMemoryMesh, target: Listener) -> InMemoryHost:
    """A bare host next to ``target``: it publishes whatever bytes it likes, unvalidated."""
    host = mesh.host(MALLORY.peer_id)

    async def run(*, task_status: trio.TaskStatus[None]) -> None:
        async with host:
            task_status.started()
            await trio.sleep_forever()

    await nursery.start(run)
    await host.connect(target.host.peer_id, target.host.listen_addrs(), timeout=1)
    return host


def _note(mesh: InMemoryMesh, text: str, *, network: str = NET, age_s: float = 0.0) -> Envelope:
    return seal(ALICE, network, NOTE, text, now=mesh.clock() - age_s)


async def test_a_signed_message_reaches_every_node_once(nursery: trio.Nursery) -> None:
    mesh, alice, bob, carol = await _line(nursery)
    assert await alice.topic.publish(alice.codec.seal(ALICE, "hello"))
    await eventually(lambda: bob.handled and carol.handled, "the note at bob and carol")
    await trio.testing.wait_all_tasks_blocked()
    assert bob.handled == carol.handled == ["hello"]
    assert alice.handled == []  # its own message is not handed back
    assert carol.topic.stats() == {"accepted": 1, "rejected": {}, "failed": 0}
    no_faults(mesh)


async def test_a_forged_message_stops_at_the_first_node_which_blames_the_relay(
    nursery: trio.Nursery,
) -> None:
    mesh, _, bob, carol = await _line(nursery)
    mallory = await _intruder(nursery, mesh, bob)
    # Alice's note with its body swapped: the signature no longer matches.
    forged = replace(_note(mesh, "pay me"), body=encode_envelope(_note(mesh, "x")))
    await mallory.publish(TOPIC, encode_envelope(forged))
    await mallory.publish(TOPIC, b"\xc1 not msgpack")
    await eventually(lambda: bob.topic.rejected_total == 2, "bob rejecting both")
    await trio.testing.wait_all_tasks_blocked()
    assert bob.topic.rejected == {"BadSignature": 1, "DecodeError": 1}
    assert bob.blamed == [(MALLORY.peer_id, "BadSignature"), (MALLORY.peer_id, "DecodeError")]
    assert bob.handled == [] and carol.topic.stats()["rejected"] == {}  # never forwarded


async def test_other_networks_stale_and_replayed_messages_are_rejected(
    nursery: trio.Nursery,
) -> None:
    mesh, _, bob, _ = await _line(nursery)
    mallory = await _intruder(nursery, mesh, bob)
    other = _note(mesh, "other mesh", network="other-net")
    stale = _note(mesh, "old news", age_s=3600)
    once = _note(mesh, "once")
    for env in (other, stale, once, once):  # the same envelope in two gossip messages
        await mallory.publish(TOPIC, encode_envelope(env))
    await eventually(lambda: bob.topic.rejected_total == 3, "three rejections")
    assert bob.topic.rejected == {"NetworkMismatch": 1, "Rejected": 2}
    assert bob.handled == ["once"]
    # The validator reported the relay of the first two; the replay is caught when admitted,
    # and blames nobody (a relay may pass on a replay in good faith).
    assert bob.blamed == [(MALLORY.peer_id, "NetworkMismatch"), (MALLORY.peer_id, "Rejected")]


async def test_a_message_whose_handling_fails_costs_only_itself(nursery: trio.Nursery) -> None:
    async def fragile(listener: Listener, signed: Signed[Any]) -> None:
        if signed.value == "poison":
            raise RuntimeError("a bug in the service")

    _, alice, bob, _ = await _line(nursery, fragile)
    for text in ("poison", "fine"):
        await alice.topic.publish(alice.codec.seal(ALICE, text))
    await eventually(lambda: bob.handled == ["fine"], "the message after the poisoned one")
    assert bob.topic.stats() == {"accepted": 1, "rejected": {}, "failed": 1}


async def test_a_handler_may_reject_a_message(nursery: trio.Nursery) -> None:
    async def picky(listener: Listener, signed: Signed[Any]) -> None:
        if signed.value == "unwanted":
            raise ProtocolError("not for us")

    _, alice, bob, _ = await _line(nursery, picky)
    for text in ("unwanted", "wanted"):
        await alice.topic.publish(alice.codec.seal(ALICE, text))
    await eventually(lambda: bob.handled == ["wanted"], "the wanted message")
    assert bob.topic.stats() == {"accepted": 1, "rejected": {"ProtocolError": 1}, "failed": 0}


async def test_a_decoder_bug_rejects_the_message_and_the_listener_lives_on(
    nursery: trio.Nursery,
) -> None:
    def parse(env: Envelope) -> Any:
        body = env.decoded_body()
        if body == "trips the bug":
            raise KeyError("bug")
        return body

    mesh = InMemoryMesh()
    alice, bob = [await _listener(nursery, mesh, i) for i in (1, 2)]
    bob.codec._parse = parse
    await alice.host.connect(bob.host.peer_id, bob.host.listen_addrs(), timeout=1)
    for text in ("trips the bug", "after it"):
        await alice.topic.publish(alice.codec.seal(ALICE, text))
    await eventually(lambda: bob.handled == ["after it"], "the message after the bug")
    assert bob.topic.rejected == {"error": 1} and bob.host.validator_errors == 0


async def test_cancelling_the_listener_is_not_a_failure(nursery: trio.Nursery) -> None:
    started = trio.Event()

    async def slow(listener: Listener, signed: Signed[Any]) -> None:
        started.set()
        await trio.sleep_forever()

    mesh = InMemoryMesh()
    host = mesh.host(BOB.peer_id)
    codec = EnvelopeCodec(EnvelopeGuard(NET), NOTE, _body, max_size=4096, clock=mesh.clock)
    topic: SignedTopic[Signed[Any]] = SignedTopic(host, TOPIC, codec, self_id=BOB.peer_id)
    listener = Listener(host, topic, codec, [], [])
    sender = mesh.host(CAROL.peer_id)

    async def handle(message: GossipMessage, signed: Signed[Any]) -> None:
        await slow(listener, signed)

    async with host, sender, trio.open_nursery() as inner:
        await inner.start(topic.run, handle)
        await sender.connect(BOB.peer_id, host.listen_addrs(), timeout=1)
        await sender.publish(TOPIC, codec.seal(CAROL, "take your time"))
        await started.wait()
        inner.cancel_scope.cancel()
    assert topic.stats() == {"accepted": 0, "rejected": {}, "failed": 0}


async def test_a_message_is_checked_once_not_again_when_handled(nursery: trio.Nursery) -> None:
    # A trust attestation of 1024 peers costs ~8 ms to check: validation's work is kept.
    parsed: list[Any] = []

    def counting(env: Envelope) -> Any:
        parsed.append(env.decoded_body())
        return parsed[-1]

    mesh = InMemoryMesh()
    alice, bob = [await _listener(nursery, mesh, i) for i in (1, 2)]
    bob.codec._parse = counting
    await alice.host.connect(bob.host.peer_id, bob.host.listen_addrs(), timeout=1)
    for text in ("first", "second"):
        await alice.topic.publish(alice.codec.seal(ALICE, text))
    await eventually(lambda: bob.handled == ["first", "second"], "both messages")
    assert parsed == ["first", "second"]
    # A replay of the same bytes is still refused: admission is not skipped.
    mallory = await _intruder(nursery, mesh, bob)
    third = alice.codec.seal(ALICE, "third")
    for _ in range(2):
        await mallory.publish(TOPIC, third)
    await eventually(lambda: bob.topic.rejected == {"Rejected": 1}, "the replay refused")
    assert bob.handled == ["first", "second", "third"]


async def test_the_publisher_does_not_check_its_own_message_again(nursery: trio.Nursery) -> None:
    # Its author made it a moment ago; a batch of 250 signed records costs ~0.1 s to check.
    parsed: dict[str, list[Any]] = {"alice": [], "bob": []}
    mesh = InMemoryMesh()
    alice, bob = [await _listener(nursery, mesh, i) for i in (1, 2)]
    for name, listener in (("alice", alice), ("bob", bob)):
        listener.codec._parse = lambda env, seen=parsed[name]: seen.append(env.decoded_body())
    await alice.host.connect(bob.host.peer_id, bob.host.listen_addrs(), timeout=1)
    await alice.topic.publish(alice.codec.seal(ALICE, "mine"))
    await eventually(lambda: bob.handled, "the note at bob")
    assert parsed == {"alice": [], "bob": ["mine"]}
    # Bytes claiming alice as their origin but relayed by anyone else are checked as ever.
    mallory = await _intruder(nursery, mesh, alice)
    forged = replace(_note(mesh, "pay me"), body=encode_envelope(_note(mesh, "x")))
    await mallory.publish(TOPIC, encode_envelope(forged))
    await eventually(lambda: alice.topic.rejected_total == 1, "alice rejecting the forgery")
    assert alice.blamed == [(MALLORY.peer_id, "BadSignature")]
