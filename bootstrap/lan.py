"""LAN discovery by mDNS (DNS-SD), the sans-IO part: service name and TXT records.

A node announces itself as an instance of a DNS-SD service whose TXT record lists its
addresses as ``dnsaddr=/ip4/…/tcp/…/p2p/<peer-id>`` strings, as the libp2p mDNS spec does.
The service type is not the spec's shared ``_p2p._udp.local.`` but one per mesh,
``_p2p-<10 hex>._udp.local.`` (the form the spec's implementations use for private
networks), derived from the network ID and secret: nodes of other meshes, and the other
libp2p software on the LAN (IPFS nodes...), never see or dial each other, and the name does
not spell the network ID. It is only a hint: whatever answers still goes through the hello
handshake, which refuses nodes of other networks.

Everything read from the LAN is hostile: records are bounded in size and count, and every
address must be a plain TCP address naming one and the same valid peer ID.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable

from bootstrap.network import BootstrapError, parse_bootstrap
from protocols.envelope import validate_network_id

#: At most this many addresses are announced, or read from one record.
MAX_TXT_ADDRS = 8
#: A TXT string is one length byte long at most.
MAX_TXT_STRING = 255
MAX_TXT_BYTES = 4096
_KEY = b"dnsaddr="


def service_type(network_id: str, secret: str = "") -> str:
    validate_network_id(network_id)
    digest = hashlib.sha256(b"meshnode/mdns/v1\0" + network_id.encode() + b"\0" + secret.encode())
    # DNS-SD service names are at most 15 characters (RFC 6763): "p2p-" + 10 hex digits.
    return f"_p2p-{digest.hexdigest()[:10]}._udp.local."


def lan_addrs(addrs: Iterable[str]) -> list[str]:
    """The addresses worth announcing on a LAN: direct TCP ones, not loopback."""
    out = []
    for addr in addrs:
        try:
            parse_bootstrap(addr)
        except BootstrapError:
            continue  # relayed (/p2p-circuit) or otherwise not a plain TCP address
        host = addr.split("/")[2]
        try:
            if ipaddress.ip_address(host).is_loopback:
                continue
        except ValueError:
            pass  # a DNS name
        if len(_KEY) + len(addr) <= MAX_TXT_STRING and addr not in out:
            out.append(addr)
    return out[:MAX_TXT_ADDRS]


def encode_txt(addrs: Iterable[str]) -> bytes:
    """TXT record data: one length-prefixed ``dnsaddr=`` string per address."""
    out = bytearray()
    for addr in lan_addrs(addrs):
        string = _KEY + addr.encode()
        out += bytes([len(string)]) + string
    return bytes(out)


def decode_txt(raw: bytes) -> tuple[str, tuple[str, ...]]:
    """The peer ID and addresses a TXT record announces; BootstrapError if it is unusable."""
    if len(raw) > MAX_TXT_BYTES:
        raise BootstrapError(f"TXT record of {len(raw)} bytes is too large")
    strings: list[bytes] = []
    i = 0
    while i < len(raw):
        n = raw[i]
        if i + 1 + n > len(raw):
            raise BootstrapError("TXT record ends inside a string")
        strings.append(raw[i + 1 : i + 1 + n])
        i += 1 + n
    peer_id = ""
    addrs: list[str] = []
    for string in strings:
        if not string.startswith(_KEY):
            continue
        try:
            addr = string[len(_KEY):].decode("ascii")
        except UnicodeDecodeError:
            raise BootstrapError("dnsaddr is not ASCII") from None
        peer = parse_bootstrap(addr).peer_id
        if peer_id and peer != peer_id:
            raise BootstrapError("TXT record names more than one peer")
        peer_id = peer
        if addr not in addrs:
            addrs.append(addr)
        if len(addrs) > MAX_TXT_ADDRS:
            raise BootstrapError(f"TXT record lists more than {MAX_TXT_ADDRS} addresses")
    if not addrs:
        raise BootstrapError("TXT record lists no usable dnsaddr")
    return peer_id, tuple(addrs)
