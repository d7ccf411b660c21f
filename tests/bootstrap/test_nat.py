"""bootstrap.nat: reachability from AutoNAT verdicts, and relayed addresses."""

from __future__ import annotations

import pytest

from bootstrap.nat import PRIVATE, PUBLIC, UNKNOWN, ReachabilityVotes, relay_of, relayed_addr
from bootstrap.network import BootstrapError
from protocols.peerid import Signer

RELAY = Signer.from_seed(bytes(range(32))).peer_id
SELF = Signer.from_seed(bytes(32)).peer_id
RELAY_ADDR = f"/ip4/192.0.2.10/tcp/4001/p2p/{RELAY}"


def test_no_verdict_is_unknown() -> None:
    assert ReachabilityVotes().status == UNKNOWN


def test_one_peer_decides_when_it_is_the_only_one() -> None:
    votes = ReachabilityVotes(confirmations=3)
    votes.vote("s1", False)
    assert votes.status == PRIVATE


def test_agreeing_verdicts_decide_and_a_tie_does_not() -> None:
    votes = ReachabilityVotes(confirmations=3)
    votes.vote("s1", True)
    votes.vote("s2", False)
    assert votes.status == UNKNOWN
    votes.vote("s3", True)
    assert votes.status == UNKNOWN, "two of three is not three confirmations"
    votes.vote("s4", True)
    assert votes.status == PUBLIC
    assert votes.counts() == {"public": 3, "private": 1}


def test_a_peer_counts_once_with_its_newest_verdict() -> None:
    votes = ReachabilityVotes(confirmations=2)
    for _ in range(5):
        votes.vote("liar", True)
    votes.vote("s2", False)
    votes.vote("s3", False)
    assert votes.status == PRIVATE
    votes.vote("s2", True)
    assert votes.status == PUBLIC
    votes.forget("s2")
    votes.forget("liar")
    assert votes.status == PRIVATE


def test_servers_are_bounded() -> None:
    votes = ReachabilityVotes(confirmations=1, max_servers=3)
    for i in range(10):
        votes.vote(f"s{i}", i % 2 == 0)
    assert sum(votes.counts().values()) == 3


def test_confirmations_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ReachabilityVotes(confirmations=0)


def test_relayed_address() -> None:
    addr = relayed_addr(RELAY_ADDR, SELF)
    assert addr == f"{RELAY_ADDR}/p2p-circuit/p2p/{SELF}"
    assert relay_of(addr) == RELAY
    assert relay_of(RELAY_ADDR) is None
    assert relay_of(f"/garbage/p2p-circuit/p2p/{SELF}") is None


@pytest.mark.parametrize("bad", [addr for addr in (
    f"/ip4/192.0.2.10/tcp/4001/p2p/{SELF}",  # itself
    f"{RELAY_ADDR}/p2p-circuit/p2p/{RELAY}",  # already relayed
    "/ip4/192.0.2.10/tcp/4001",  # no peer ID
)])
def test_unusable_relay_addresses(bad: str) -> None:
    with pytest.raises(BootstrapError):
        relayed_addr(bad, SELF)
