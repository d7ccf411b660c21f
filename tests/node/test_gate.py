"""HelloGate: tasks and memory only for peers whose hello was verified on this connection."""

from __future__ import annotations

import trio
import trio.testing

from meshnode.node.gate import HelloGate


async def test_a_greeted_peer_is_admitted_at_once() -> None:
    gate = HelloGate()
    gate.passed("A")
    assert gate.greeted("A")
    with trio.fail_after(1):
        assert await gate.wait("A", timeout=10)


async def test_a_stream_waits_for_the_hello_of_its_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = HelloGate()
    results: list[bool] = []

    async def handler() -> None:
        results.append(await gate.wait("A", timeout=10))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(handler)
        await trio.sleep(3)
        assert results == []
        gate.passed("A")
    assert results == [True]


async def test_no_hello_in_time_is_a_refusal_and_leaves_nothing_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = HelloGate()
    assert not await gate.wait("A", timeout=10)
    assert gate._greeted == {}


async def test_a_gossip_only_peer_is_refused_and_wakes_its_waiters(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = HelloGate()
    results: list[bool] = []

    async def handler() -> None:
        results.append(await gate.wait("J", timeout=10))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(handler)
        await trio.sleep(1)
        assert gate.no_hello("J")
    assert results == [False]
    assert trio.current_time() < 2, "refused at once, not at the deadline"
    assert not await gate.wait("J", timeout=10)


async def test_disconnect_forgets_the_hello() -> None:
    gate = HelloGate()
    gate.passed("A")
    gate.gone("A")
    assert not gate.greeted("A")


def test_gossip_only_peers_are_bounded() -> None:
    gate = HelloGate(max_gossip_only=2)
    assert gate.no_hello("J1") and gate.no_hello("J2")
    assert not gate.no_hello("J3"), "the third must be disconnected"
    assert gate.no_hello("J1"), "one already kept stays kept"
    gate.gone("J1")
    assert gate.no_hello("J3")
    assert gate.gossip_only == {"J2", "J3"}
