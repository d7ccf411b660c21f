"""bootstrap.network: the private-network key and bootstrap address parsing."""

from __future__ import annotations

import re

import multiaddr
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootstrap.network import BootstrapError, BootstrapPeer, network_psk, parse_bootstrap
from protocols.errors import DecodeError
from protocols.peerid import Signer

PEER = Signer.from_seed(bytes(range(32))).peer_id
OTHER = Signer.from_seed(bytes(32)).peer_id

# ---- network_psk ------------------------------------------------------------------------


def test_psk_is_none_without_a_secret() -> None:
    assert network_psk("dev-support", "") is None


def test_psk_is_64_hex_chars_and_deterministic() -> None:
    psk = network_psk("dev-support", "hunter2")
    assert psk is not None
    assert re.fullmatch(r"[0-9a-f]{64}", psk)
    assert network_psk("dev-support", "hunter2") == psk


def test_psk_depends_on_network_id_and_secret() -> None:
    keys = {
        network_psk(net, secret)
        for net in ("a", "b", "dev-support")
        for secret in ("x", "y", "hunter2", "hunter22")
    }
    assert None not in keys
    assert len(keys) == 12  # every (network, secret) pair gives its own key


def test_psk_is_not_the_bare_secret_hash() -> None:
    import hashlib

    assert network_psk("n", "s") != hashlib.sha256(b"s").hexdigest()


def test_psk_with_a_bad_network_id_raises() -> None:
    with pytest.raises(DecodeError):
        network_psk("bad/id", "secret")


# ---- parse_bootstrap --------------------------------------------------------------------


@pytest.mark.parametrize(
    "addr",
    [
        f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}",
        f"/ip4/10.1.2.3/tcp/65535/p2p/{PEER}",
        f"/ip6/::1/tcp/1/p2p/{PEER}",
        f"/ip6/2001:db8::5/tcp/4001/p2p/{PEER}",
        f"/dns4/boot.example.org/tcp/4001/p2p/{PEER}",
        f"/dns/localhost/tcp/4001/p2p/{PEER}",
        f"/dns6/a-b.example/tcp/4001/p2p/{PEER}",
    ],
)
def test_parse_bootstrap_accepts(addr: str) -> None:
    peer = parse_bootstrap(addr)
    assert peer == BootstrapPeer(peer_id=PEER, addr=addr)
    assert str(multiaddr.Multiaddr(peer.addr)) == addr  # usable by libp2p as it is


def test_parse_bootstrap_strips_whitespace() -> None:
    addr = f"/ip4/127.0.0.1/tcp/4001/p2p/{OTHER}"
    assert parse_bootstrap(f"  {addr}\n") == BootstrapPeer(peer_id=OTHER, addr=addr)


@pytest.mark.parametrize(
    "addr",
    [
        "",
        "/",
        "127.0.0.1:4001",
        f"ip4/127.0.0.1/tcp/4001/p2p/{PEER}",  # no leading slash
        "/ip4/127.0.0.1/tcp/4001",  # no peer ID
        f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}/",  # trailing slash
        f"/ip4/127.0.0.1/tcp/4001/ipfs/{PEER}",
        f"/ip4/127.0.0.1/udp/4001/p2p/{PEER}",
        f"/tcp/4001/ip4/127.0.0.1/p2p/{PEER}",
        f"/unix/sock/tcp/4001/p2p/{PEER}",
        f"/ip4/127.0.0.1/tcp/0/p2p/{PEER}",
        f"/ip4/127.0.0.1/tcp/65536/p2p/{PEER}",
        f"/ip4/127.0.0.1/tcp/-1/p2p/{PEER}",
        f"/ip4/127.0.0.1/tcp/http/p2p/{PEER}",
        f"/ip4/127.0.0.1/tcp//p2p/{PEER}",
        f"/ip4/127.0.0.1/tcp/4001 /p2p/{PEER}",
        f"/ip4/127.0.0.1/tcp/\u00b2/p2p/{PEER}",  # superscript two: isdigit() but not int()
        f"/ip4/127.0.0.1/tcp/\uff14\uff10\uff10\uff11/p2p/{PEER}",  # fullwidth 4001
        f"/ip4//tcp/4001/p2p/{PEER}",
        f"/ip4/999.0.0.1/tcp/4001/p2p/{PEER}",
        f"/ip4/localhost/tcp/4001/p2p/{PEER}",
        f"/ip4/::1/tcp/4001/p2p/{PEER}",
        f"/ip6/127.0.0.1/tcp/4001/p2p/{PEER}",
        f"/ip6/fe80::1%eth0/tcp/4001/p2p/{PEER}",  # multiaddr wants /ip6zone/ for that
        f"/dns4//tcp/4001/p2p/{PEER}",
        f"/dns4/bad host/tcp/4001/p2p/{PEER}",
        f"/dns4/-lead.example/tcp/4001/p2p/{PEER}",
        "/ip4/127.0.0.1/tcp/4001/p2p/",
        "/ip4/127.0.0.1/tcp/4001/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",  # RSA
        f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER[:-1]}",  # truncated
        f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER[:-1]}l",  # 'l' is not base58
        f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}{PEER}",  # too long
    ],
)
def test_parse_bootstrap_rejects(addr: str) -> None:
    with pytest.raises(BootstrapError) as info:
        parse_bootstrap(addr)
    assert repr(addr) in str(info.value) or addr == ""  # the message quotes the input


def test_bootstrap_error_is_a_value_error() -> None:
    assert issubclass(BootstrapError, ValueError)


def check_parse(addr: str) -> None:
    """parse_bootstrap either accepts (and the result is consistent) or raises BootstrapError."""
    try:
        peer = parse_bootstrap(addr)
    except BootstrapError:
        return
    assert peer.addr == addr.strip()
    assert peer.addr.endswith("/p2p/" + peer.peer_id)
    # Whatever it accepts, libp2p's multiaddr must accept too (the daemon dials it as is).
    assert str(multiaddr.Multiaddr(peer.addr)).endswith(peer.peer_id)


@settings(max_examples=300)
@given(st.text())
def test_random_text_only_ever_raises_bootstrap_error(addr: str) -> None:
    check_parse(addr)


segment = st.text(max_size=12) | st.sampled_from(["", "0", "4001", "65535", "65536", "1.2.3.4"])


@settings(max_examples=300)
@given(
    proto=st.sampled_from(["ip4", "ip6", "dns", "dns4", "dns6", "tcp", "udp", ""]) | st.text(),
    host=segment | st.ip_addresses().map(str) | st.from_regex(r"[a-z0-9.-]{1,20}", fullmatch=True),
    transport=st.sampled_from(["tcp", "udp"]),
    port=segment | st.integers(-5, 70_000).map(str),
    p2p=st.sampled_from(["p2p", "ipfs"]),
    peer=st.sampled_from([PEER, OTHER, PEER[:-1], ""]) | st.text(max_size=60),
    pad=st.sampled_from(["", " ", "\n", "\t "]),
)
def test_structured_addresses_only_ever_raise_bootstrap_error(
    proto: str, host: str, transport: str, port: str, p2p: str, peer: str, pad: str
) -> None:
    check_parse(f"{pad}/{proto}/{host}/{transport}/{port}/{p2p}/{peer}{pad}")


@settings(max_examples=100)
@given(
    ip=st.ip_addresses(v=4).map(str),
    port=st.integers(1, 65535),
    seed=st.binary(min_size=32, max_size=32),
)
def test_every_valid_ip4_address_is_accepted(ip: str, port: int, seed: bytes) -> None:
    peer_id = Signer.from_seed(seed).peer_id
    addr = f"/ip4/{ip}/tcp/{port}/p2p/{peer_id}"
    assert parse_bootstrap(addr) == BootstrapPeer(peer_id=peer_id, addr=addr)
