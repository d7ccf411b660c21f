"""Network secret → libp2p pre-shared key, and bootstrap address parsing."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass

from protocols.envelope import validate_network_id
from protocols.errors import DecodeError
from protocols.peerid import validate_peer_id


class BootstrapError(ValueError):
    """A bootstrap address or network setting is unusable: the bootstrap package's one error."""


_DNS_NAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")


def _valid_host(proto: str, host: str) -> bool:
    if proto in ("ip4", "ip6"):
        if "%" in host:  # an IPv6 zone: multiaddr spells it /ip6zone/…, not inside /ip6/
            return False
        kind = ipaddress.IPv4Address if proto == "ip4" else ipaddress.IPv6Address
        try:
            kind(host)
        except ValueError:
            return False
        return True
    return _DNS_NAME.fullmatch(host) is not None


def network_psk(network_id: str, secret: str) -> str | None:
    """The 32-byte libp2p private-network key (hex) for a secret, or None for a public mesh.

    Binding the network ID into the key means two meshes that reuse a secret still cannot
    connect to each other.
    """
    if not secret:
        return None
    validate_network_id(network_id)
    key = hmac.new(secret.encode(), b"meshnode/pnet/v1\0" + network_id.encode(), hashlib.sha256)
    return key.hexdigest()


@dataclass(frozen=True, slots=True)
class BootstrapPeer:
    peer_id: str
    addr: str  # the full multiaddr, /p2p/<peer-id> included


def parse_bootstrap(addr: str) -> BootstrapPeer:
    """Check that ``addr`` looks like /ip4|ip6|dns*/<host>/tcp/<port>/p2p/<peer-id>."""
    parts = addr.strip().split("/")
    if len(parts) != 7 or parts[0] != "" or parts[3] != "tcp" or parts[5] != "p2p":
        raise BootstrapError(
            f"bootstrap address {addr!r} must look like /ip4/<ip>/tcp/<port>/p2p/<peer-id>"
        )
    if parts[1] not in ("ip4", "ip6", "dns", "dns4", "dns6"):
        raise BootstrapError(f"bootstrap address {addr!r}: unsupported protocol {parts[1]!r}")
    if not _valid_host(parts[1], parts[2]):
        raise BootstrapError(f"bootstrap address {addr!r}: bad {parts[1]} host {parts[2]!r}")
    # isascii(): str.isdigit() also accepts superscript and fullwidth digits, which int()
    # refuses (ValueError, not BootstrapError) or multiaddr cannot parse.
    if not (parts[4].isascii() and parts[4].isdigit()) or not 0 < int(parts[4]) < 65536:
        raise BootstrapError(f"bootstrap address {addr!r}: bad TCP port {parts[4]!r}")
    try:
        validate_peer_id(parts[6])
    except DecodeError as exc:
        raise BootstrapError(f"bootstrap address {addr!r}: {exc}") from None
    return BootstrapPeer(peer_id=parts[6], addr=addr.strip())
