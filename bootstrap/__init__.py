"""Joining a mesh: network identity and secret, bootstrap addresses, whom to dial next,
LAN discovery records (``bootstrap.lan``) and reachability from AutoNAT verdicts and relayed
addresses (``bootstrap.nat``). Sans-IO; imports only ``protocols``."""

from bootstrap.dialer import DialPolicy
from bootstrap.network import BootstrapError, BootstrapPeer, network_psk, parse_bootstrap

__all__ = ["BootstrapError", "BootstrapPeer", "DialPolicy", "network_psk", "parse_bootstrap"]
