"""Fuzz a live node: fuzzed frames on every stream protocol and gossip topic of a daemon.

Starts a real `meshnode start` daemon, then an attacker in this process: a real MeshHost
with a membership (so it passes the hello, as any member can) that opens streams on
``/meshnode/hello``, ``/meshnode/memsync`` and ``/meshnode/a2a`` and writes fuzzed frames
(made by bench/fuzz_decoders.py's generators: random bytes, mutated valid frames, deep
nesting, huge declared lengths), and publishes fuzzed messages on the presence, knowledge
and trust topics. Afterwards the node must still answer a libp2p ping and its API's status;
reports its faults, and its RSS before, after and at peak.

    python bench/fuzz_live.py --streams 2000 --messages 5000
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import trio.lowlevel
from fuzz_decoders import generate, seeds

from meshnode.config import GossipSettings, NodeConfig
from meshnode.node.host import MeshHost
from meshnode.node.membership import HELLO_PROTOCOL, Membership
from protocols.a2a import A2A_PROTOCOL
from protocols.codec import encode_frame
from protocols.memsync import PROTOCOL_ID as MEMSYNC
from protocols.peerid import Signer
from protocols.presence import topic
from tests.integration.harness import Daemon, cli_json, mesh

NETWORK = "fuzz-net"
#: topic -> the generator pool its messages come from
TOPICS = {"presence": "presence", "knowledge": "announcement", "trust": "attestation"}


def rss_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


async def send(host: MeshHost, target: Daemon, protocol: str, payload: bytes) -> None:
    """One stream: write, read whatever comes back (if anything), close."""
    async with host.open_stream(target.peer_id, protocol, timeout=5) as stream:
        with trio.move_on_after(0.5):
            await stream.write(payload)
            await stream.read(65536)


async def fuzz_streams(host: MeshHost, target: Daemon, protocol: str, frames: list[bytes],
                       report: dict[str, Any]) -> None:
    failures: Counter[str] = Counter()
    started = time.monotonic()
    for payload in frames:
        try:
            await send(host, target, protocol, payload)
        except Exception as exc:  # the node hanging up on garbage is the point: go on
            failures[type(exc).__name__] += 1
    report[protocol] = (len(frames), failures, time.monotonic() - started)


async def fuzz_hellos(target: Daemon, frames: list[bytes], report: dict[str, Any]) -> None:
    """A bad hello gets a peer refused and disconnected: one fresh identity per frame."""
    failures: Counter[str] = Counter()
    started = time.monotonic()
    gossip = GossipSettings(heartbeat_s=0.5)
    for payload in frames:
        sent = False
        try:
            async with MeshHost(Ed25519PrivateKey.generate(), listen=["/ip4/127.0.0.1/tcp/0"],
                                gossip=gossip) as host:
                await host.connect(target.peer_id, [target.addr], timeout=10)
                await send(host, target, HELLO_PROTOCOL, payload)
                sent = True
        except Exception as exc:  # py-libp2p may fail to shut a throwaway host down cleanly
            failures[("after sending: " if sent else "") + type(exc).__name__] += 1
    report[HELLO_PROTOCOL] = (len(frames), failures, time.monotonic() - started)


async def attack(target: Daemon, home: Path, args: argparse.Namespace,
                 report: dict[str, Any]) -> None:
    rng = random.Random(5)
    pools = seeds()

    def frames(pool: str, count: int, framed: bool) -> list[bytes]:
        made = [generate(rng, pools[pool]) for _ in range(count)]
        # Mostly length-prefixed as the protocol frames them; some raw, prefix and all.
        return [encode_frame(d[: 1 << 20]) if framed and rng.random() < 0.8 else d
                for d in made]

    key = Ed25519PrivateKey.generate()
    config = NodeConfig(home=home, network_id=NETWORK, bootstrap=(target.addr,),
                        gossip=GossipSettings(presence_interval_s=1.0, heartbeat_s=0.5))
    async with MeshHost(key, listen=["/ip4/127.0.0.1/tcp/0"], gossip=config.gossip) as host:
        membership = Membership(config, host, Signer(key), version="fuzzer")
        async with trio.open_nursery() as nursery:
            await nursery.start(membership.run)
            with trio.fail_after(60):
                while target.peer_id not in membership.verified_connected():  # noqa: ASYNC110
                    await trio.sleep(0.2)
            await fuzz_streams(host, target, MEMSYNC,
                               frames("memsync-server", args.streams, False), report)
            await fuzz_streams(host, target, A2A_PROTOCOL,
                               frames("a2a-request", args.streams, True), report)
            for kind, pool in TOPICS.items():
                started = time.monotonic()
                failures: Counter[str] = Counter()
                for data in frames(pool, args.messages, False):
                    try:
                        await host.publish(topic(NETWORK, kind), data)
                    except Exception as exc:  # py-libp2p refusing to publish: not ours
                        failures[type(exc).__name__] += 1
                    await trio.lowlevel.checkpoint()
                report[f"topic {kind}"] = (args.messages, failures, time.monotonic() - started)
            await fuzz_hellos(target, frames("hello", args.hellos, True), report)
            await trio.sleep(5)  # let the node work through what it received
            with trio.fail_after(30):
                while target.peer_id not in host.connected_peers():
                    await host.connect(target.peer_id, [target.addr], timeout=10)
            report["ping_ms"] = await host.ping(target.peer_id, timeout=10) * 1000
            nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=2000, help="per stream protocol")
    parser.add_argument("--messages", type=int, default=5000, help="per gossip topic")
    parser.add_argument("--hellos", type=int, default=300,
                        help="hello frames, each from a fresh identity")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, mesh(Path(tmp)) as nodes:
        node = Daemon(Path(tmp), "target", NETWORK).start(log_level="info")
        nodes.append(node)
        assert node.proc is not None
        before = rss_kb(node.proc.pid)
        report: dict[str, Any] = {}
        started = time.monotonic()
        thread = threading.Thread(target=trio.run, args=(
            attack, node, Path(tmp) / "fuzzer", args, report))
        thread.start()
        thread.join()
        if node.proc.poll() is not None:
            Path("/tmp/fuzz-live-daemon.log").write_text(node.log_text())
            print(node.log_text()[-3000:])
            raise SystemExit(f"the node died (exit {node.proc.returncode})")
        status = cli_json(node.home, "status")  # raises if the node stopped answering
        after = rss_kb(node.proc.pid)
        print(f"{time.strftime('%Y-%m-%d')}, {time.monotonic() - started:.0f} s")
        print("| target | frames | s | attacker-side failures (the node hanging up) |")
        print("| --- | --- | --- | --- |")
        for name, value in report.items():
            if isinstance(value, tuple):
                print(f"| {name} | {value[0]:,} | {value[2]:.0f} | {dict(value[1]) or '-'} |")
        print(f"alive: ping {report.get('ping_ms', float('nan')):.1f} ms, status answered "
              f"(peer {status['peer_id'][-8:]}), process running: {node.proc.poll() is None}")
        print(f"faults contained: {status.get('faults', {})}")
        print(f"RSS before {before['VmRSS'] / 1024:.0f} MB, after {after['VmRSS'] / 1024:.0f} "
              f"MB, peak {after['VmHWM'] / 1024:.0f} MB")


if __name__ == "__main__":
    main()
