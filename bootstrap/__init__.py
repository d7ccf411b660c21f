"""Joining a mesh: network identity and secret, bootstrap addresses, and whom to dial next."""

from bootstrap.dialer import DialPolicy
from bootstrap.network import BootstrapError, BootstrapPeer, network_psk, parse_bootstrap

__all__ = ["BootstrapError", "BootstrapPeer", "DialPolicy", "network_psk", "parse_bootstrap"]
