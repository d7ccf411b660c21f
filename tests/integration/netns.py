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
from dataclasses import dataclass

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


@dataclass(frozen=True)
class TwoNats:
    """A public relay on an "internet" bridge (192.0.2.0/24) and two home networks behind
    two NAT routers: host a at 10.1.0.2 behind 192.0.2.21, host b at 10.2.0.2 behind
    192.0.2.22 (the NAT lab of tests/integration/test_nat.py and bench/bench_reach.py)."""

    net: Lab
    relay: str  # namespaces
    routers: dict[str, str]
    hosts: dict[str, str]
    relay_ip = "192.0.2.10"
    public_ips = {"a": "192.0.2.21", "b": "192.0.2.22"}
    host_ips = {"a": "10.1.0.2", "b": "10.2.0.2"}

    def block(self, side: str, ip: str, table: str) -> None:
        """Router ``side`` drops everything to and from ``ip`` (until ``unblock``)."""
        self.net.nft(self.routers[side],
                     f"table ip {table} {{ chain gate {{ type filter hook forward priority -10;"
                     f" policy accept; ip daddr {ip} drop; ip saddr {ip} drop; }}; }}")

    def unblock(self, side: str, table: str) -> None:
        self.net.nft(self.routers[side], f"delete table ip {table}")

    def separate(self) -> None:
        """The routers drop each other's traffic: the relay is the only way between a and b."""
        self.block("a", self.public_ips["b"], "no_direct")
        self.block("b", self.public_ips["a"], "no_direct")

    def join(self) -> None:
        self.unblock("a", "no_direct")
        self.unblock("b", "no_direct")


def two_nats(net: Lab, *, random_ports: bool = False) -> TwoNats:
    inet = net.netns("inet")
    net.bridge(inet)
    relay = net.netns("relay")
    net.wire(relay, f"{TwoNats.relay_ip}/24", to=inet, bridge="br0")
    routers, hosts = {}, {}
    for side, lan in (("a", "10.1.0"), ("b", "10.2.0")):
        router = routers[side] = net.netns(f"r{side}")
        public_if = net.wire(router, f"{TwoNats.public_ips[side]}/24", to=inet, bridge="br0")
        host = hosts[side] = net.netns(f"h{side}")
        net.wire(host, f"{lan}.2/24", to=router, peer_addr=f"{lan}.1/24")
        net.route_default(host, f"{lan}.1")
        net.masquerade(router, private=f"{lan}.0/24", public_if=public_if, random=random_ports)
    return TwoNats(net, relay, routers, hosts)
