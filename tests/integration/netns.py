"""Small Linux network labs for tests: namespaces, veth pairs, bridges and NAT routers.

Everything a lab creates lives in network namespaces named after the test process, and is
removed when the lab closes (a namespace takes its interfaces and its nftables rules with
it). Traffic never leaves the lab: no interface of the root namespace is touched. Needs
root and iproute2; NAT needs nftables (`nft`), which .ci/run installs.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

_counter = itertools.count()


def lab_available(*, nat: bool = False) -> str | None:
    """None if labs can run here, else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "needs iproute2"
    if nat and shutil.which("nft") is None:
        return "needs nftables (apt-get install nftables)"
    return None


def sh(*cmd: str) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")
    return result.stdout


class Lab:
    def __init__(self) -> None:
        # Short: interface names are at most 15 characters.
        self.tag = f"m{os.getpid() % 100000}{next(_counter)}"
        self.namespaces: list[str] = []
        self._links = itertools.count()

    def netns(self, name: str) -> str:
        ns = f"{self.tag}-{name}"
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def exec_prefix(self, ns: str) -> tuple[str, ...]:
        return ("ip", "netns", "exec", ns)

    def run(self, ns: str, *cmd: str) -> str:
        return sh(*self.exec_prefix(ns), *cmd)

    def bridge(self, ns: str) -> str:
        sh("ip", "-n", ns, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", ns, "link", "set", "br0", "up")
        return "br0"

    def wire(self, ns: str, addr: str, *, to: str, bridge: str | None = None,
             peer_addr: str | None = None) -> str:
        """A veth pair from ``ns`` (address ``addr``, a CIDR) to namespace ``to``: attached
        to ``bridge`` there, or addressed ``peer_addr``. Returns the interface in ``ns``."""
        n = next(self._links)
        inside, outside = f"{self.tag}a{n}"[-15:], f"{self.tag}b{n}"[-15:]
        sh("ip", "link", "add", inside, "netns", ns, "type", "veth", "peer", "name", outside,
           "netns", to)
        sh("ip", "-n", ns, "addr", "add", addr, "dev", inside)
        sh("ip", "-n", ns, "link", "set", inside, "up")
        if bridge is not None:
            sh("ip", "-n", to, "link", "set", outside, "master", bridge)
        elif peer_addr is not None:
            sh("ip", "-n", to, "addr", "add", peer_addr, "dev", outside)
        sh("ip", "-n", to, "link", "set", outside, "up")
        return inside

    def route_default(self, ns: str, via: str) -> None:
        sh("ip", "-n", ns, "route", "add", "default", "via", via)

    def masquerade(self, ns: str, *, private: str, public_if: str, random: bool = False) -> None:
        """Make ``ns`` a home router: forward, masquerade ``private`` out ``public_if``, and
        drop connections that start outside (no port forwarding, as most routers do).

        Linux masquerading keeps a flow's source port when it is free (endpoint-independent
        mapping in practice) unless told ``random`` (a new port per flow, as symmetric NATs
        do): the kept port is what lets hole punching work.
        """
        self.run(ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        self.nft(ns, f"""
table ip nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {private} oifname "{public_if}" masquerade{" random" if random else ""}
    }}
}}
table ip firewall {{
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname "{public_if}" ct state new drop
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname "{public_if}" ct state new drop
    }}
}}
""")

    def nft(self, ns: str, ruleset: str) -> None:
        result = subprocess.run([*self.exec_prefix(ns), "nft", "-f", "-"], input=ruleset,
                                text=True, capture_output=True, timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"nft in {ns} failed: {result.stderr.strip()}\n{ruleset}")

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self.namespaces.clear()


@contextmanager
def lab() -> Iterator[Lab]:
    built = Lab()
    try:
        yield built
    finally:
        built.close()
