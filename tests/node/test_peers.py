"""meshnode.peers.PeerTable: presence ordering, self, expiry, suspicion, bounds and eviction,
and the JSON snapshot."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshnode.node.peers import PeerTable
from protocols.presence import Presence

SELF = "12D3KooWSelf"
A = "12D3KooWAaaa"
B = "12D3KooWBbbb"


def presence(
    peer_id: str = A,
    seq: int = 1,
    addrs: tuple[str, ...] = ("/ip4/10.0.0.1/tcp/4001",),
    version: str = "0.1.0",
    load: float = 0.0,
    cards: str = "",
    leaving: bool = False,
) -> Presence:
    return Presence(peer_id=peer_id, addrs=addrs, version=version, seq=seq, ttl_s=30.0,
                    load=load, cards=cards, agents=1 if cards else 0, leaving=leaving)


def table(ttl_s: float = 30.0, max_peers: int = 10_000) -> PeerTable:
    return PeerTable(self_id=SELF, ttl_s=ttl_s, max_peers=max_peers)


# ---- presence ordering ------------------------------------------------------------------


def test_first_presence_adds_the_peer() -> None:
    t = table()
    p = presence(seq=5, cards="ab" * 32, load=0.25)
    assert t.saw_presence(p, now=100.0) is True
    record = t.get(A)
    assert record is not None
    assert record.presence == p
    assert record.addrs == ("/ip4/10.0.0.1/tcp/4001",)
    assert record.version == "0.1.0"
    assert (record.first_seen, record.last_seen, record.last_presence) == (100.0, 100.0, 100.0)
    assert A in t and len(t) == 1


@pytest.mark.parametrize("stale_seq", [4, 5])
def test_lower_or_equal_seq_is_ignored(stale_seq: int) -> None:
    t = table()
    newest = presence(seq=5, addrs=("/ip4/10.0.0.1/tcp/1",), version="2")
    assert t.saw_presence(newest, now=100.0)
    stale = presence(seq=stale_seq, addrs=("/ip4/10.0.0.9/tcp/9",), version="1", load=9.0)
    assert t.saw_presence(stale, now=110.0) is False
    record = t.get(A)
    assert record is not None
    assert record.presence == newest
    assert record.addrs == ("/ip4/10.0.0.1/tcp/1",)
    assert record.version == "2"
    assert record.last_presence == 100.0
    # An ignored announcement proves nothing about now: it does not keep the peer alive.
    assert record.last_seen == 100.0
    assert t.expire(now=131.0, connected=set()) == [A]


def test_higher_seq_replaces() -> None:
    t = table()
    t.saw_presence(presence(seq=1, addrs=("/ip4/10.0.0.1/tcp/1",)), now=100.0)
    newer = presence(seq=2, addrs=("/ip4/10.0.0.2/tcp/2",), version="0.2.0")
    assert t.saw_presence(newer, now=105.0) is True
    record = t.get(A)
    assert record is not None
    assert record.presence == newer
    assert record.addrs == ("/ip4/10.0.0.2/tcp/2",)
    assert record.version == "0.2.0"
    assert (record.first_seen, record.last_seen, record.last_presence) == (100.0, 105.0, 105.0)


def test_presence_without_addrs_keeps_known_addrs() -> None:
    t = table()
    t.saw_hello(A, ["/ip4/10.0.0.1/tcp/1"], "0.1.0", now=1.0)
    assert t.saw_presence(presence(seq=1, addrs=()), now=2.0)
    record = t.get(A)
    assert record is not None and record.addrs == ("/ip4/10.0.0.1/tcp/1",)


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from([A, B]), st.integers(-5, 20)), max_size=30))
def test_the_highest_seq_wins_whatever_the_order(announcements: list[tuple[str, int]]) -> None:
    t = table()
    best: dict[str, int] = {}
    for i, (peer_id, seq) in enumerate(announcements):
        applied = t.saw_presence(presence(peer_id, seq=seq, version=str(seq)), now=float(i))
        assert applied == (peer_id not in best or seq > best[peer_id])
        best[peer_id] = max(best.get(peer_id, seq), seq)
    assert {r.peer_id: r.presence.seq for r in t if r.presence} == best
    assert {r.peer_id: r.version for r in t} == {p: str(s) for p, s in best.items()}


# ---- self -------------------------------------------------------------------------------


def test_self_is_never_added() -> None:
    t = table()
    assert t.saw_presence(presence(SELF, seq=1), now=1.0) is False
    t.saw_hello(SELF, ["/ip4/127.0.0.1/tcp/1"], "0.1.0", now=1.0)
    t.saw_ping(SELF, 1.0, now=1.0)
    assert SELF not in t
    assert len(t) == 0
    assert t.snapshot(connected={SELF}, agents=lambda r: []) == []


# ---- hello and ping ------------------------------------------------------------------------


def test_hello_adds_and_updates() -> None:
    t = table()
    t.saw_hello(A, ["/ip4/10.0.0.1/tcp/1"], "0.1.0", now=5.0)
    t.saw_hello(A, [], "0.1.1", now=7.0)
    record = t.get(A)
    assert record is not None
    assert record.addrs == ("/ip4/10.0.0.1/tcp/1",)  # empty list keeps the old addresses
    assert record.version == "0.1.1"
    assert (record.first_seen, record.last_seen) == (5.0, 7.0)
    assert record.presence is None


def test_last_seen_never_goes_back() -> None:
    t = table()
    t.saw_hello(A, [], "v", now=10.0)
    t.saw_hello(A, [], "v", now=3.0)
    t.saw_ping(A, 2.0, now=4.0)
    assert t.saw_presence(presence(seq=1), now=5.0)
    record = t.get(A)
    assert record is not None and record.last_seen == 10.0


def test_ping_updates_known_peers_only() -> None:
    t = table()
    t.saw_ping(A, 3.0, now=1.0)
    assert A not in t
    t.saw_hello(A, [], "v", now=1.0)
    t.saw_ping(A, 3.14159, now=9.0)
    record = t.get(A)
    assert record is not None
    assert (record.rtt_ms, record.last_seen) == (3.14159, 9.0)


# ---- expiry and bounds ------------------------------------------------------------------


def test_expire_drops_only_silent_unconnected_peers() -> None:
    t = table(ttl_s=30.0)
    t.saw_hello(A, [], "v", now=0.0)  # silent, not connected: goes
    t.saw_hello(B, [], "v", now=0.0)  # silent but connected: stays
    t.saw_hello("12D3KooWCccc", [], "v", now=50.0)  # recent: stays
    assert t.expire(now=30.0, connected={B}) == []  # exactly ttl_s is not yet "over"
    assert t.expire(now=30.001, connected={B}) == [A]
    assert A not in t
    assert sorted(r.peer_id for r in t) == [B, "12D3KooWCccc"]
    assert t.expire(now=30.001, connected={B}) == []


def test_expire_after_disconnect() -> None:
    t = table(ttl_s=10.0)
    t.saw_hello(A, [], "v", now=0.0)
    assert t.expire(now=100.0, connected={A}) == []
    assert t.expire(now=100.0, connected=set()) == [A]


def test_ping_keeps_a_peer_alive() -> None:
    t = table(ttl_s=10.0)
    t.saw_hello(A, [], "v", now=0.0)
    t.saw_ping(A, 1.0, now=8.0)
    assert t.expire(now=15.0, connected=set()) == []
    assert t.expire(now=18.5, connected=set()) == [A]


def test_max_peers_bound() -> None:
    t = table(max_peers=2)
    t.saw_hello(A, [], "v", now=0.0)
    assert t.saw_presence(presence(B, seq=1), now=0.0)
    # Full: an announced-only newcomer does not displace what is held (it is no fresher)...
    assert t.saw_presence(presence("12D3KooWCccc", seq=1), now=0.0) is False
    assert len(t) == 2 and sorted(r.peer_id for r in t) == [A, B] and t.refused == 1
    # ...but a peer verified by its hello displaces the worst announced-only entry.
    t.saw_hello("12D3KooWDddd", ["/ip4/1.1.1.1/tcp/1"], "v", now=0.0)
    assert sorted(r.peer_id for r in t) == [A, "12D3KooWDddd"] and t.evicted == 1
    # Known peers are still updated when the table is full.
    assert t.saw_presence(presence(A, seq=3), now=1.0)
    # Room again once a peer expires.
    assert t.expire(now=100.0, connected={A}) == ["12D3KooWDddd"]
    assert t.saw_presence(presence("12D3KooWCccc", seq=1), now=100.0)
    assert len(t) == 2


def test_a_full_table_keeps_verified_and_trusted_peers_against_a_flood() -> None:
    trusted = "12D3KooWTrust"
    t = PeerTable(SELF, ttl_s=30.0, max_peers=10,
                  standing=lambda p: 0.5 if p == trusted else 0.0)
    t.saw_hello(A, [], "v", now=0.0)
    assert t.saw_presence(presence(trusted, seq=1), now=0.0)
    for i in range(1000):  # a swarm of announced identities, each fresher than the last
        t.saw_presence(presence(f"12D3KooWSybil{i}", seq=1), now=1.0 + i)
    assert len(t) == 10
    assert A in t and trusted in t  # verified and trusted entries are never displaced
    # An honest newcomer verified by its hello still gets in.
    t.saw_hello(B, [], "v", now=2000.0)
    assert B in t and len(t) == 10


def test_bytes_held_are_bounded() -> None:
    t = PeerTable(SELF, ttl_s=30.0, max_bytes=20_000)
    envelope = b"x" * 4000
    for i in range(100):
        t.saw_presence(presence(f"12D3KooWPeer{i}", seq=1), now=float(i), envelope=envelope)
    assert t.bytes_held <= 20_000 and 3 <= len(t) <= 5
    assert sum(r.size for r in t) == t.bytes_held


# ---- suspicion and goodbye ------------------------------------------------------------------


def test_a_suspicion_is_refuted_by_a_newer_incarnation_only() -> None:
    t = table()
    assert t.saw_presence(presence(A, seq=5), now=0.0)
    assert t.suspect(A, 5, accuser=B, now=1.0) is True
    assert t.suspect(A, 5, accuser=B, now=2.0) is False  # the same accuser again: no news
    assert t.suspect(A, 5, accuser="12D3KooWCccc", now=2.0) is True  # a confirmation
    record = t.get(A)
    assert record is not None and record.suspicion is not None
    assert record.suspicion.accusers == {B, "12D3KooWCccc"}
    assert [r.peer_id for r in t.suspects()] == [A]
    assert t.saw_presence(presence(A, seq=6), now=3.0)  # refuted
    assert record.suspicion is None
    assert t.suspect(A, 5, accuser=B, now=4.0) is False  # about a superseded incarnation


def test_a_forgotten_peer_is_not_revived_by_older_news() -> None:
    t = table()
    assert t.saw_presence(presence(A, seq=5), now=0.0)
    t.forget(A)
    assert A not in t
    assert t.saw_presence(presence(A, seq=5), now=1.0) is False  # still travelling
    assert t.saw_presence(presence(A, seq=6), now=2.0) is True  # it came back


def test_a_goodbye_removes_the_peer() -> None:
    t = table()
    assert t.saw_presence(presence(A, seq=5), now=0.0)
    assert t.saw_presence(presence(A, seq=6, leaving=True), now=1.0) is False
    assert A not in t
    assert t.saw_presence(presence(A, seq=6), now=2.0) is False


def test_a_longer_announced_ttl_is_honoured() -> None:
    t = table(ttl_s=30.0)
    long = Presence(peer_id=A, addrs=(), version="v", seq=1, ttl_s=600.0)
    assert t.saw_presence(long, now=0.0)
    assert t.expire(now=300.0, connected=set()) == []
    assert t.expire(now=601.0, connected=set()) == [A]


def test_iteration_is_safe_while_expiring() -> None:
    t = table(ttl_s=1.0)
    for i in range(5):
        t.saw_hello(f"12D3KooWPeer{i}", [], "v", now=0.0)
    for record in t:
        t.expire(now=10.0, connected=set())
        assert record.peer_id.startswith("12D3KooWPeer")
    assert len(t) == 0


# ---- snapshot ---------------------------------------------------------------------------


def test_snapshot_json(new_peer_id: Callable[[], str]) -> None:
    t = table()
    ids = sorted(new_peer_id() for _ in range(3))
    t.saw_presence(presence(ids[2], seq=1, cards="cd" * 32, load=0.5), now=10.0)
    t.saw_hello(ids[0], ["/ip4/10.0.0.1/tcp/1", "/ip6/::1/tcp/1"], "0.1.0", now=20.0)
    t.saw_ping(ids[0], 1.23456, now=21.0)
    t.saw_hello(ids[1], [], "0.1.0", now=22.0)

    snapshot = t.snapshot(connected={ids[0]}, agents=lambda r: [
        {"name": "milvus-expert"}] if r.presence and r.presence.cards else [])
    assert json.loads(json.dumps(snapshot)) == snapshot  # plain JSON types only
    assert [p["peer_id"] for p in snapshot] == ids  # sorted by peer ID
    required = {"peer_id", "addrs", "connected", "last_seen", "rtt_ms"}
    for entry in snapshot:
        assert required <= entry.keys()

    first, second, third = snapshot
    assert first["addrs"] == ["/ip4/10.0.0.1/tcp/1", "/ip6/::1/tcp/1"]
    assert first["connected"] is True
    assert first["last_seen"] == 21.0
    assert first["rtt_ms"] == 1.235
    assert first["agents"] == []
    assert second["connected"] is False
    assert second["addrs"] == []
    assert second["rtt_ms"] is None
    assert third["agents"] == [{"name": "milvus-expert"}]
    assert third["load"] == 0.5
    assert third["last_seen"] == 10.0


def test_known_addrs() -> None:
    t = table()
    t.saw_hello(A, ["/ip4/10.0.0.1/tcp/1"], "v", now=0.0)
    t.saw_hello(B, [], "v", now=0.0)
    assert t.known_addrs() == {A: ("/ip4/10.0.0.1/tcp/1",), B: ()}
