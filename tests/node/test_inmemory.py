"""The in-memory mesh behaves as the Host interface promises (and as MeshHost does)."""

from __future__ import annotations

from contextlib import suppress

import pytest
import trio
import trio.testing

from meshnode.node.inmemory import InMemoryHost, InMemoryMesh
from meshnode.node.transport import DialError, GossipMessage, Stream
from tests.inmemory import eventually

ECHO = "/test/echo/1"
TOPIC = "test/topic"


async def _echo(stream: Stream) -> None:
    while data := await stream.read(1024):
        await stream.write(stream.peer_id.encode() + b":" + data)


async def _hosts(nursery: trio.Nursery, mesh: InMemoryMesh, *names: str) -> list[InMemoryHost]:
    hosts = [mesh.host(name) for name in names]
    for host in hosts:
        async def run(host: InMemoryHost = host, *, task_status: trio.TaskStatus[None]) -> None:
            async with host:
                task_status.started()
                await trio.sleep_forever()

        await nursery.start(run)
    return hosts


async def _link(a: InMemoryHost, b: InMemoryHost) -> None:
    await a.connect(b.peer_id, b.listen_addrs(), timeout=1)


def _drain(events: trio.MemoryReceiveChannel[tuple[str, str]]) -> list[tuple[str, str]]:
    out = []
    with suppress(trio.WouldBlock):
        while True:
            out.append(events.receive_nowait())
    return out


async def test_connect_and_disconnect_raise_events_on_both_sides(nursery: trio.Nursery) -> None:
    mesh = InMemoryMesh()
    a, b = await _hosts(nursery, mesh, "a", "b")
    await _link(a, b)
    assert a.connected_peers() == {"b"} and b.connected_peers() == {"a"}
    await _link(a, b)  # already connected: nothing new
    await b.disconnect("a")
    assert not a.connected_peers()
    assert _drain(a.connection_events) == [("connected", "b"), ("disconnected", "b")]
    assert _drain(b.connection_events) == [("connected", "a"), ("disconnected", "a")]


async def test_dials_need_a_right_address_and_an_open_link(nursery: trio.Nursery) -> None:
    mesh = InMemoryMesh()
    a, b = await _hosts(nursery, mesh, "a", "b")
    with pytest.raises(DialError, match="address"):
        await a.connect("b", a.listen_addrs(), timeout=1)
    with pytest.raises(DialError):
        await a.connect("nobody", b.listen_addrs(), timeout=1)
    mesh.cut("a", "b")
    with pytest.raises(DialError, match="cut"):
        await _link(a, b)
    mesh.heal("a", "b")
    await _link(a, b)
    mesh.drop("b")
    assert not a.connected_peers()
    with pytest.raises(DialError):
        await _link(a, b)
    mesh.restore("b")
    await _link(b, a)
    assert a.connected_peers() == {"b"}


async def test_streams_reach_the_protocol_handler_and_reset_with_the_link(
    nursery: trio.Nursery,
) -> None:
    mesh = InMemoryMesh()
    a, b = await _hosts(nursery, mesh, "a", "b")
    b.set_stream_handler(ECHO, _echo)
    with pytest.raises(DialError, match="not connected"):
        async with a.open_stream("b", ECHO, timeout=1):
            pass
    await _link(a, b)
    with pytest.raises(DialError, match="not supported"):
        async with a.open_stream("b", "/nobody/speaks/this", timeout=1):
            pass
    async with a.open_stream("b", ECHO, timeout=1) as stream:
        assert stream.peer_id == "b"
        await stream.write(b"hello")
        assert await stream.read(1024) == b"a:hello"  # the handler saw who opened it
    async with a.open_stream("b", ECHO, timeout=1) as stream:
        await stream.write(b"x")
        assert await stream.read(1024) == b"a:x"
        await a.disconnect("b")
        with pytest.raises(trio.BrokenResourceError):
            await stream.read(1024)


async def test_a_failing_handler_is_counted_and_the_host_keeps_serving(
    nursery: trio.Nursery,
) -> None:
    mesh = InMemoryMesh()
    a, b = await _hosts(nursery, mesh, "a", "b")

    async def broken(stream: Stream) -> None:
        raise RuntimeError("bug in a handler")

    b.set_stream_handler("/broken/1", broken)
    b.set_stream_handler(ECHO, _echo)
    await _link(a, b)
    async with a.open_stream("b", "/broken/1", timeout=1) as stream:
        assert await stream.read(10) == b""  # the host closed the stream
    assert b.handler_errors == 1
    async with a.open_stream("b", ECHO, timeout=1) as stream:
        await stream.write(b"still here")
        assert await stream.read(1024) == b"a:still here"


async def test_gossip_floods_once_per_host_with_the_relaying_forwarder(
    nursery: trio.Nursery,
) -> None:
    # a - b - c in a line (a and c cannot connect), plus d - b and d - c: a triangle b, c, d.
    mesh = InMemoryMesh()
    a, b, c, d = await _hosts(nursery, mesh, "a", "b", "c", "d")
    mesh.cut("a", "c")
    mesh.cut("a", "d")
    seen: dict[str, list[GossipMessage]] = {"b": [], "c": [], "d": []}
    subscriptions = {}
    for host in (a, b, c, d):
        subscriptions[host.peer_id] = await host.subscribe(TOPIC)
        if host.peer_id in seen:
            host.set_topic_validator(TOPIC, lambda m, p=host.peer_id: seen[p].append(m) is None)
    for x, y in ((a, b), (b, c), (b, d), (c, d)):
        await _link(x, y)
    assert a.topic_peers(TOPIC) == 1 and b.topic_peers(TOPIC) == 3

    await a.publish(TOPIC, b"news")
    got = {}
    for name in "abcd":
        with trio.fail_after(1):
            got[name] = await subscriptions[name].__anext__()
    assert {m.data for m in got.values()} == {b"news"}
    assert {m.origin for m in got.values()} == {"a"}
    assert got["a"].forwarder == "a" and got["b"].forwarder == "a"
    assert got["c"].forwarder == "b"  # a cannot reach c: b relayed it
    await eventually(lambda: all(len(v) >= 1 for v in seen.values()), "validation everywhere")
    await trio.testing.wait_all_tasks_blocked()
    # Each host validated and delivered it once, although c and d each heard it twice.
    assert {p: len(v) for p, v in seen.items()} == {"b": 1, "c": 1, "d": 1}
    for name in "abcd":
        with trio.move_on_after(0.01) as nothing_more:
            await subscriptions[name].__anext__()
        assert nothing_more.cancelled_caught


async def test_a_rejected_message_is_neither_delivered_nor_forwarded(
    nursery: trio.Nursery,
) -> None:
    mesh = InMemoryMesh()
    a, b, c = await _hosts(nursery, mesh, "a", "b", "c")
    mesh.cut("a", "c")
    for host in (a, b, c):
        await host.subscribe(TOPIC)
    seen_by_c: list[GossipMessage] = []
    c.set_topic_validator(TOPIC, lambda m: seen_by_c.append(m) is None)

    def only_good(message: GossipMessage) -> bool:
        if message.data == b"crash":
            raise ValueError("a validator bug")
        return message.data == b"good"

    b.set_topic_validator(TOPIC, only_good)
    await _link(a, b)
    await _link(b, c)
    for data in (b"bad", b"crash", b"good"):
        await a.publish(TOPIC, data)
    await eventually(lambda: seen_by_c, "the good message at c")
    await trio.testing.wait_all_tasks_blocked()
    assert [m.data for m in seen_by_c] == [b"good"]
    assert b.validator_errors == 1


async def test_a_publisher_whose_validator_rejects_sends_nothing(nursery: trio.Nursery) -> None:
    mesh = InMemoryMesh()
    a, b = await _hosts(nursery, mesh, "a", "b")
    received = await b.subscribe(TOPIC)
    a.set_topic_validator(TOPIC, lambda m: m.data != b"bad")
    await _link(a, b)
    await a.publish(TOPIC, b"bad")
    await a.publish(TOPIC, b"ok")
    with trio.fail_after(1):
        assert (await received.__anext__()).data == b"ok"


async def test_ping_takes_the_link_round_trip(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    mesh = InMemoryMesh(rtt_s=0.004)
    a, b, c = await _hosts(nursery, mesh, "a", "b", "c")
    await _link(a, b)
    await _link(a, c)
    mesh.set_rtt("a", "c", 0.250)
    assert await a.ping("b", timeout=1) == pytest.approx(4.0)
    assert await a.ping("c", timeout=1) == pytest.approx(250.0)
    with pytest.raises(DialError, match="within"):
        await a.ping("c", timeout=0.1)
    await a.disconnect("b")
    with pytest.raises(DialError):
        await a.ping("b", timeout=1)


async def test_a_host_that_stops_disconnects_from_everyone(nursery: trio.Nursery) -> None:
    mesh = InMemoryMesh()
    a = (await _hosts(nursery, mesh, "a"))[0]
    b = mesh.host("b")
    async with b:
        await _link(a, b)
        assert a.connected_peers() == {"b"}
    assert not a.connected_peers()
    with pytest.raises(DialError):
        await _link(a, b)
