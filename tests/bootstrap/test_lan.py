"""bootstrap.lan: the mDNS service name and TXT records, read from a hostile LAN."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bootstrap.lan import MAX_TXT_ADDRS, decode_txt, encode_txt, lan_addrs, service_type
from bootstrap.network import BootstrapError
from protocols.peerid import Signer

PEER = Signer.from_seed(bytes(range(32))).peer_id
OTHER = Signer.from_seed(bytes(32)).peer_id
ADDR = f"/ip4/192.168.1.20/tcp/4001/p2p/{PEER}"


def _txt(*strings: bytes) -> bytes:
    return b"".join(bytes([len(s)]) + s for s in strings)


def test_service_type_is_per_mesh_and_a_valid_dns_sd_name() -> None:
    name = service_type("dev-support")
    assert re.fullmatch(r"_p2p-[0-9a-f]{10}\._udp\.local\.", name)
    assert len(name.split(".")[0]) - 1 <= 15  # RFC 6763 service names
    assert service_type("dev-support") == name
    assert service_type("other") != name
    assert service_type("dev-support", "secret") != name
    assert "dev-support" not in name


def test_only_direct_non_loopback_addresses_are_announced() -> None:
    relayed = f"/ip4/1.2.3.4/tcp/4001/p2p/{OTHER}/p2p-circuit/p2p/{PEER}"
    addrs = [f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}", ADDR, relayed, ADDR]
    assert lan_addrs(addrs) == [ADDR]
    many = [f"/ip4/10.0.0.{i}/tcp/4001/p2p/{PEER}" for i in range(20)]
    assert len(lan_addrs(many)) == MAX_TXT_ADDRS


def test_round_trip() -> None:
    second = f"/ip4/10.0.0.7/tcp/4001/p2p/{PEER}"
    assert decode_txt(encode_txt([ADDR, second])) == (PEER, (ADDR, second))


def test_other_txt_strings_are_ignored() -> None:
    assert decode_txt(_txt(b"id=whatever", b"dnsaddr=" + ADDR.encode())) == (PEER, (ADDR,))


@pytest.mark.parametrize(("raw", "why"), [
    (b"", "no usable"),
    (_txt(b"id=x"), "no usable"),
    (b"\x20dnsaddr=", "ends inside"),
    (_txt(b"dnsaddr=/ip4/1.2.3.4/tcp/1"), "must look like"),
    (_txt(b"dnsaddr=" + ADDR.encode(), f"dnsaddr=/ip4/1.2.3.4/tcp/1/p2p/{OTHER}".encode()),
     "more than one peer"),
    (_txt(*[f"dnsaddr=/ip4/10.0.0.{i}/tcp/1/p2p/{PEER}".encode() for i in range(9)]),
     "more than 8"),
    (_txt(b"dnsaddr=\xff"), "ASCII"),
    (b"\x00" * 5000, "too large"),
])
def test_unusable_records_are_refused(raw: bytes, why: str) -> None:
    with pytest.raises(BootstrapError, match=why):
        decode_txt(raw)


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_any_bytes_decode_or_raise_bootstrap_error(raw: bytes) -> None:
    try:
        peer_id, addrs = decode_txt(raw)
    except BootstrapError:
        return
    assert all(a.endswith(f"/p2p/{peer_id}") for a in addrs)
