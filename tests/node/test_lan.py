"""LanDiscovery's bookkeeping of what the LAN announces (the zeroconf I/O is tested in
tests/integration/test_lan.py, in network namespaces)."""

from __future__ import annotations

from bootstrap.lan import encode_txt
from meshnode.node.lan import MAX_CANDIDATES, LanDiscovery
from protocols.peerid import Signer

SELF = Signer.from_seed(bytes(32)).peer_id


def _peer(i: int) -> tuple[str, str]:
    peer_id = Signer.from_seed(i.to_bytes(32, "big")).peer_id
    return peer_id, f"/ip4/10.0.{i // 250}.{i % 250 + 1}/tcp/4001/p2p/{peer_id}"


def _lan() -> LanDiscovery:
    return LanDiscovery(peer_id=SELF, network_id="dev-support", secret="", addrs=list)


def test_found_peers_become_candidates_until_they_leave() -> None:
    lan = _lan()
    peer_id, addr = _peer(1)
    lan._learn("x._p2p", encode_txt([addr]))
    assert lan.candidates() == {peer_id: (addr,)}
    lan._learn("x._p2p", None)
    assert lan.candidates() == {}
    assert lan.discovered == 1


def test_itself_and_garbage_are_not_candidates() -> None:
    lan = _lan()
    lan._learn("me", encode_txt([f"/ip4/10.0.0.1/tcp/1/p2p/{SELF}"]))
    lan._learn("junk", b"\x05dnsad")
    assert lan.candidates() == {} and lan.rejected == 1


def test_candidates_are_bounded() -> None:
    lan = _lan()
    for i in range(1, MAX_CANDIDATES + 50):
        lan._learn(f"n{i}", encode_txt([_peer(i)[1]]))
    found = lan.candidates()
    assert len(found) == MAX_CANDIDATES
    assert _peer(MAX_CANDIDATES + 49)[0] in found and _peer(1)[0] not in found
