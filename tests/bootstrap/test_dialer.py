"""bootstrap.dialer.DialPolicy: whom to dial, backoff with jitter, bans."""

from __future__ import annotations

import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bootstrap.dialer import DialPolicy

SELF = "self"


def peers(n: int, prefix: str = "p") -> dict[str, list[str]]:
    return {f"{prefix}{i}": [f"/ip4/10.0.0.{i}/tcp/4001"] for i in range(n)}


class FixedRandom(random.Random):
    """random() always returns ``value``; shuffle keeps the order."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value

    def shuffle(self, x: list[object]) -> None:  # type: ignore[override]
        return None


def choose(
    policy: DialPolicy,
    *,
    known: dict[str, list[str]] | None = None,
    connected: set[str] | None = None,
    bootstrap: dict[str, str] | None = None,
    now: float = 0.0,
) -> list[tuple[str, list[str]]]:
    return policy.choose(
        known=known or {}, connected=connected or set(), bootstrap=bootstrap or {},
        self_id=SELF, now=now,
    )


# ---- whom to dial -----------------------------------------------------------------------


def test_alone_dials_every_bootstrap_peer_but_self() -> None:
    policy = DialPolicy(8)
    boot = {"b1": "/ip4/1.1.1.1/tcp/1/p2p/b1", "b2": "/ip4/2.2.2.2/tcp/1/p2p/b2",
            SELF: "/ip4/3.3.3.3/tcp/1/p2p/self"}
    picks = choose(policy, bootstrap=boot)
    assert sorted(picks) == [("b1", ["/ip4/1.1.1.1/tcp/1/p2p/b1"]),
                             ("b2", ["/ip4/2.2.2.2/tcp/1/p2p/b2"])]


def test_alone_dials_bootstrap_and_fills_up_with_known_peers() -> None:
    policy = DialPolicy(4, rng=random.Random(1))
    picks = dict(choose(policy, known=peers(10), bootstrap={"b1": "/dns4/b/tcp/1/p2p/b1"}))
    assert len(picks) == 4
    assert picks["b1"] == ["/dns4/b/tcp/1/p2p/b1"]
    assert all(p.startswith("p") for p in picks if p != "b1")


def test_alone_tries_all_bootstrap_peers_even_beyond_target() -> None:
    # Documented behaviour: a node with no connection tries every bootstrap peer at once.
    policy = DialPolicy(1)
    boot = {f"b{i}": f"/ip4/1.1.1.{i}/tcp/1/p2p/b{i}" for i in range(3)}
    assert sorted(p for p, _ in choose(policy, bootstrap=boot)) == ["b0", "b1", "b2"]


def test_bootstrap_peers_are_not_dialed_once_connected() -> None:
    policy = DialPolicy(8)
    picks = choose(policy, connected={"p0"}, bootstrap={"b1": "/ip4/1.1.1.1/tcp/1/p2p/b1"})
    assert picks == []


def test_bootstrap_is_not_redialed_while_a_dial_is_in_flight() -> None:
    policy = DialPolicy(8)
    boot = {"b1": "/ip4/1.1.1.1/tcp/1/p2p/b1"}
    assert [p for p, _ in choose(policy, bootstrap=boot)] == ["b1"]
    assert choose(policy, bootstrap=boot, now=100.0) == []
    policy.failed("b1", now=100.0)
    assert choose(policy, bootstrap=boot, now=100.0) == []  # backing off
    assert [p for p, _ in choose(policy, bootstrap=boot, now=1000.0)] == ["b1"]


def test_never_dials_self_connected_in_flight_or_addressless_peers() -> None:
    policy = DialPolicy(100)
    known = peers(6)
    known[SELF] = ["/ip4/9.9.9.9/tcp/1"]
    known["no-addrs"] = []
    first = {p for p, _ in choose(policy, known=known, connected={"p0", "p1"})}
    assert first == {"p2", "p3", "p4", "p5"}
    # Everything else is connected or in flight now.
    assert choose(policy, known=known, connected={"p0", "p1"}) == []


def test_addresses_are_copied_from_known() -> None:
    policy = DialPolicy(2)
    known = {"a": ["/ip4/1.2.3.4/tcp/1", "/ip6/::1/tcp/1"]}
    picks = choose(policy, known=known)
    assert picks == [("a", ["/ip4/1.2.3.4/tcp/1", "/ip6/::1/tcp/1"])]
    picks[0][1].append("mutated")
    assert known["a"] == ["/ip4/1.2.3.4/tcp/1", "/ip6/::1/tcp/1"]


def test_respects_target() -> None:
    policy = DialPolicy(5, rng=random.Random(7))
    known = peers(20)
    connected = {"p0", "p1"}
    picks = [p for p, _ in choose(policy, known=known, connected=connected)]
    assert len(picks) == 3 and len(set(picks)) == 3
    assert not set(picks) & connected
    assert choose(policy, known=known, connected=connected) == []  # 2 connected + 3 in flight

    # One dial succeeds (now connected), one fails: one slot opens, for someone else.
    policy.succeeded(picks[0])
    connected.add(picks[0])
    policy.failed(picks[1], now=0.0)
    again = [p for p, _ in choose(policy, known=known, connected=connected)]
    assert len(again) == 1
    assert again[0] not in connected | set(picks)


def test_above_target_dials_nobody() -> None:
    policy = DialPolicy(2)
    assert choose(policy, known=peers(10), connected={"x", "y", "z"}) == []


def test_choice_among_candidates_is_random() -> None:
    seen = set()
    for seed in range(20):
        policy = DialPolicy(2, rng=random.Random(seed))
        [(peer, _)] = choose(policy, known=peers(10), connected={"c"})
        seen.add(peer)
    assert len(seen) > 3  # not always the first peers in the mapping


# ---- backoff ------------------------------------------------------------------------------------


@pytest.mark.parametrize("jitter", [0.0, 0.999999])
def test_backoff_doubles_up_to_the_maximum_with_jitter_bounds(jitter: float) -> None:
    policy = DialPolicy(1, base_backoff_s=1.0, max_backoff_s=60.0, rng=FixedRandom(jitter))
    factor = 0.5 + jitter / 2
    expected = [1, 2, 4, 8, 16, 32, 60, 60, 60]
    delays = [policy.failed("a", now=0.0) for _ in expected]
    assert delays == pytest.approx([e * factor for e in expected])


@settings(max_examples=200)
@given(
    failures=st.integers(1, 3000),
    base=st.floats(0.01, 10.0),
    cap=st.floats(0.01, 600.0),
    seed=st.integers(0, 2**32),
)
def test_backoff_always_within_jitter_bounds(
    failures: int, base: float, cap: float, seed: int
) -> None:
    policy = DialPolicy(1, base_backoff_s=base, max_backoff_s=cap, rng=random.Random(seed))
    for _ in range(failures - 1):
        policy.failed("a", now=0.0)
    delay = policy.failed("a", now=0.0)
    full = min(cap, base * 2.0 ** min(failures - 1, 1000))
    assert 0.5 * full <= delay <= full


def test_many_failures_do_not_overflow() -> None:
    # A bootstrap peer that stays down for a day fails thousands of times.
    policy = DialPolicy(1, max_backoff_s=60.0, rng=random.Random(0))
    for _ in range(5000):
        delay = policy.failed("down", now=0.0)
    assert 30.0 <= delay <= 60.0


def test_peer_is_retried_exactly_when_its_backoff_ends() -> None:
    policy = DialPolicy(1, rng=FixedRandom(0.5))
    known = peers(1)
    assert [p for p, _ in choose(policy, known=known, now=100.0)] == ["p0"]
    delay = policy.failed("p0", now=100.0)
    assert delay == pytest.approx(0.75)
    assert choose(policy, known=known, now=100.0 + delay - 1e-6) == []
    assert [p for p, _ in choose(policy, known=known, now=100.0 + delay)] == ["p0"]


def test_success_resets_the_backoff() -> None:
    policy = DialPolicy(1, rng=FixedRandom(0.0))
    for _ in range(5):
        policy.failed("a", now=0.0)
    policy.succeeded("a")
    assert policy.failed("a", now=0.0) == pytest.approx(0.5)  # back to the first step


def test_failed_dial_frees_its_slot() -> None:
    policy = DialPolicy(1, rng=FixedRandom(0.0))
    known = peers(2)
    [(first, _)] = choose(policy, known=known)
    assert choose(policy, known=known) == []
    policy.failed(first, now=0.0)
    assert [p for p, _ in choose(policy, known=known)] == [p for p in known if p != first]


# ---- bans and forget --------------------------------------------------------------------------


def test_ban_prevents_dialing_for_ban_s() -> None:
    policy = DialPolicy(5, ban_s=600.0)
    known = peers(1)
    assert not policy.banned("p0", now=0.0)
    policy.ban("p0", now=1000.0)
    assert policy.banned("p0", now=1000.0)
    assert policy.banned("p0", now=1599.9)
    assert choose(policy, known=known, now=1599.9) == []
    assert not policy.banned("p0", now=1600.0)
    assert [p for p, _ in choose(policy, known=known, now=1600.0)] == ["p0"]


def test_ban_applies_to_bootstrap_peers_too() -> None:
    policy = DialPolicy(5, ban_s=60.0)
    boot = {"b": "/ip4/1.1.1.1/tcp/1/p2p/b"}
    policy.ban("b", now=0.0)
    assert choose(policy, bootstrap=boot, now=30.0) == []
    assert [p for p, _ in choose(policy, bootstrap=boot, now=61.0)] == ["b"]


def test_ban_frees_an_in_flight_slot() -> None:
    policy = DialPolicy(1)
    known = peers(2)
    [(first, _)] = choose(policy, known=known)
    policy.ban(first, now=0.0)
    assert [p for p, _ in choose(policy, known=known)] == [p for p in known if p != first]


def test_a_failure_after_a_ban_does_not_shorten_it() -> None:
    # The handshake bans a peer of another network; its dial then reports a failure.
    policy = DialPolicy(5, ban_s=600.0, rng=FixedRandom(0.0))
    [(peer, _)] = choose(policy, known=peers(1))
    policy.ban(peer, now=0.0)
    policy.failed(peer, now=0.0)
    assert policy.banned(peer, now=10.0)
    assert choose(policy, known=peers(1), now=10.0) == []


def test_a_success_after_a_ban_does_not_lift_it() -> None:
    # The hello of another network bans the peer before the dial task records success.
    policy = DialPolicy(5, ban_s=600.0)
    [(peer, _)] = choose(policy, known=peers(1))
    policy.ban(peer, now=0.0)
    policy.succeeded(peer)
    assert policy.banned(peer, now=10.0)
    assert choose(policy, known=peers(1), now=10.0) == []
    assert [p for p, _ in choose(policy, known=peers(1), now=601.0)] == [peer]


def test_forget_drops_backoff_but_keeps_bans() -> None:
    policy = DialPolicy(5, ban_s=600.0, rng=FixedRandom(0.0))
    known = peers(2)
    for _ in range(6):
        policy.failed("p0", now=0.0)  # backing off for 16 s
    policy.ban("p1", now=0.0)
    policy.forget(["p0", "p1", "never-seen"], now=1.0)
    assert policy.banned("p1", now=1.0)
    assert [p for p, _ in choose(policy, known=known, now=1.0)] == ["p0"]
    assert policy.failed("p0", now=1.0) == pytest.approx(0.5)  # history was forgotten


def test_forget_drops_expired_bans() -> None:
    policy = DialPolicy(5, ban_s=10.0, rng=FixedRandom(0.0))
    policy.ban("p0", now=0.0)
    policy.forget(["p0"], now=11.0)
    assert not policy.banned("p0", now=11.0)
    assert policy.failed("p0", now=11.0) == pytest.approx(0.5)


# ---- property: random event sequences ---------------------------------------------------

ALL_PEERS = [f"p{i}" for i in range(8)]
BOOT = {"p0": "/ip4/1.1.1.1/tcp/1/p2p/p0", "p1": "/ip4/1.1.1.2/tcp/1/p2p/p1"}

event = st.one_of(
    st.tuples(st.just("choose"), st.floats(0.0, 30.0)),
    st.tuples(st.just("succeeded"), st.integers(0, 100)),
    st.tuples(st.just("failed"), st.integers(0, 100)),
    st.tuples(st.just("ban"), st.integers(0, 100)),
    st.tuples(st.just("ban-dialing"), st.integers(0, 100)),
    st.tuples(st.just("disconnect"), st.integers(0, 100)),
    st.tuples(st.just("forget"), st.integers(0, 100)),
)


@settings(max_examples=500, deadline=None)
@given(
    target=st.integers(2, 6),
    known_count=st.integers(0, len(ALL_PEERS)),
    events=st.lists(event, max_size=60),
    seed=st.integers(0, 2**32),
)
# A dial that fails after its peer was banned must not shorten the ban.
@example(
    target=2,
    known_count=2,
    events=[("choose", 0.0), ("failed", 0), ("ban", 1), ("failed", 0), ("choose", 1.0)],
    seed=0,
)
# Nor may one that succeeds lift it (p1 disconnects, then is dialed again while banned).
@example(
    target=2,
    known_count=2,
    events=[("choose", 0.0), ("ban-dialing", 1), ("succeeded", 1), ("disconnect", 1),
            ("choose", 1.0)],
    seed=0,
)
def test_random_event_sequences_keep_the_invariants(
    target: int, known_count: int, events: list[tuple[str, float]], seed: int
) -> None:
    ban_s = 50.0
    policy = DialPolicy(target, base_backoff_s=1.0, max_backoff_s=20.0, ban_s=ban_s,
                        rng=random.Random(seed))
    known = {p: [f"/ip4/10.0.0.{i}/tcp/1"] for i, p in enumerate(ALL_PEERS[:known_count])}
    known[SELF] = ["/ip4/10.9.9.9/tcp/1"]
    now = 0.0
    connected: set[str] = set()
    # A dial task reports succeeded/failed when it ends, even if the peer was banned meanwhile
    # (the handshake of another connection can ban it); a ban frees its slot at once.
    dialing: set[str] = set()  # dial tasks still running
    in_flight: set[str] = set()  # the slots the policy counts: dialing and not banned since
    not_before: dict[str, float] = {}  # the model's backoff deadlines
    banned_until: dict[str, float] = {}

    def subject(kind: str, index: float) -> str | None:
        """The peer an event is about, or None when there is none to apply it to."""
        pool = {
            "succeeded": dialing,
            "failed": dialing,
            "ban": set(ALL_PEERS),
            "ban-dialing": dialing,
            "disconnect": connected,
            "forget": set(ALL_PEERS) - connected - dialing,
        }[kind]
        ordered = sorted(pool)
        return ordered[int(index) % len(ordered)] if ordered else None

    for kind, arg in events:
        if kind == "choose":
            now += arg
            slots = max(0, target - len(connected) - len(in_flight))
            alone = not connected and not in_flight
            picks = policy.choose(known=known, connected=connected, bootstrap=BOOT,
                                  self_id=SELF, now=now)
            ids = [p for p, _ in picks]
            assert len(ids) == len(set(ids)), "duplicate picks"
            assert len(ids) <= slots  # len(BOOT) <= target, so this holds when alone too
            for p in ids:
                assert p != SELF
                assert p not in connected and p not in in_flight
                assert not_before.get(p, 0.0) <= now, f"{p} picked while backing off"
                assert banned_until.get(p, 0.0) <= now, f"{p} picked while banned"
                assert not policy.banned(p, now)
                assert p in known or (p in BOOT and alone)
            in_flight |= set(ids)
            dialing |= set(ids)
            continue
        peer = subject(kind, arg)
        if peer is None:
            continue
        if kind == "succeeded":
            policy.succeeded(peer)
            dialing.discard(peer)
            in_flight.discard(peer)
            connected.add(peer)
            not_before.pop(peer, None)
        elif kind == "failed":
            delay = policy.failed(peer, now)
            assert 0.5 <= delay <= 20.0
            dialing.discard(peer)
            in_flight.discard(peer)
            not_before[peer] = now + delay
        elif kind in ("ban", "ban-dialing"):
            policy.ban(peer, now)
            in_flight.discard(peer)
            banned_until[peer] = now + ban_s
            assert policy.banned(peer, now)
        elif kind == "disconnect":
            connected.discard(peer)
        elif kind == "forget":
            policy.forget([peer], now)
            not_before.pop(peer, None)
            assert policy.banned(peer, now) == (banned_until.get(peer, 0.0) > now)


# ---- announced addresses are no reason to dial ------------------------------------------------


def test_verified_peers_come_first_and_announced_ones_within_a_budget() -> None:
    policy = DialPolicy(8, unverified_per_s=0.1, unverified_burst=3, rng=FixedRandom(0.5))
    known = peers(20)
    verified = {"p18", "p19"}
    picks = policy.choose(known=known, connected=set(), bootstrap={}, self_id=SELF, now=0.0,
                          verified=verified)
    assert [p for p, _ in picks][:2] == ["p18", "p19"]
    assert len(picks) == 2 + 3  # the burst of announced-only peers, no more
    for peer, _ in picks:
        policy.failed(peer, 0.0)
    later = policy.choose(known=known, connected=set(), bootstrap={}, self_id=SELF, now=10.0,
                          verified=verified)
    assert len([p for p, _ in later if p not in verified]) == 1  # 0.1 a second


def test_an_address_that_failed_backs_off_whoever_announces_it() -> None:
    policy = DialPolicy(8, rng=FixedRandom(1.0))
    bait = "/ip4/10.66.0.1/tcp/22"
    sybils = {f"s{i}": [f"{bait}/p2p/s{i}"] for i in range(50)}
    dialed = 0
    now = 0.0
    while now < 300.0:
        for peer, addrs in policy.choose(known=sybils, connected=set(), bootstrap={},
                                         self_id=SELF, now=now):
            dialed += 1
            policy.failed(peer, now, addrs)
        now += 1.0
    # The endpoint's backoff doubles with each failure, up to a minute: 1+2+4+...+60 s.
    assert dialed <= 12


def test_only_a_few_addresses_of_a_peer_are_dialed() -> None:
    policy = DialPolicy(8)
    many = {"p": [f"/ip4/10.0.0.{i}/tcp/1/p2p/p" for i in range(30)]}
    (picked,) = choose(policy, known=many)
    assert picked == ("p", many["p"][:4])
