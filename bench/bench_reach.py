"""Reach: relayed vs direct connections between NATed nodes, and js-libp2p <-> py gossip.

Part 1 (root, nftables): the NAT lab of tests/integration/test_nat.py — a public relay and
two nodes behind two masquerading home routers, each node a worker process (MeshHost +
Membership + NatService, the daemon's own parts) in its network namespace. With the direct
path between the routers blocked, B dials A through the relay (setup time, repeated) and
pings it (RTT). Then the block is lifted, B hole-punches (DCUtR, time to a direct
connection) and pings again over the direct connection; finally A's direct dial to the
public relay is timed for comparison.

Part 2 (Node.js): a js-libp2p 3.x peer connected to a MeshHost on loopback; publish-to-
receipt latency of GossipSub messages py -> js and js -> py (one machine, one clock).

    python bench/bench_reach.py --rounds 10 --pings 50 --messages 200
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshnode.config import GossipSettings, NodeConfig
from meshnode.node.host import MeshHost
from meshnode.node.membership import Membership
from meshnode.node.nat import NatService
from meshnode.stats import quantile as pct
from protocols.peerid import Signer

NETWORK = "bench-reach"
TOPIC = "/meshnode/bench-reach/js/1"


# ---- part 1: the worker, one per namespace ---------------------------------------------


async def _lines(stream: trio.abc.ReceiveStream) -> Any:
    buffer = b""
    while True:
        data = await stream.receive_some(65536)
        if not data:
            return
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield json.loads(line)


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


async def worker(listen: str, bootstrap: list[str], relay: bool) -> None:
    key = Ed25519PrivateKey.generate()
    config = NodeConfig(
        home=Path(tempfile.mkdtemp()), network_id=NETWORK, bootstrap=tuple(bootstrap),
        target_connections=1, mdns=False, relay_service=relay, autonat_confirmations=1,
        hole_punch_retry_s=3600.0,  # the bench punches when it wants to
        gossip=GossipSettings(presence_interval_s=1.0, heartbeat_s=0.5, ping_interval_s=3600.0),
    )
    async with MeshHost(key, listen=[listen], gossip=config.gossip) as host:
        membership = Membership(config, host, Signer(key), version="bench")
        nat = NatService(config, host, membership)
        async with trio.open_nursery() as nursery:
            await nursery.start(membership.run)
            await nursery.start(nat.run)
            _emit({"event": "ready", "peer_id": host.peer_id, "addrs": host.listen_addrs()})
            async for cmd in _lines(trio.lowlevel.FdStream(os.dup(0))):
                try:
                    _emit(await _command(cmd, host, nat))
                except Exception as exc:  # report it to the driver, keep serving
                    _emit({"error": f"{type(exc).__name__}: {exc}"})
            nursery.cancel_scope.cancel()


async def _command(cmd: dict[str, Any], host: MeshHost, nat: NatService) -> dict[str, Any]:
    op, peer = cmd["op"], cmd.get("peer", "")
    if op == "status":
        return {"reachability": nat.reachability, "addrs": host.listen_addrs(),
                "relays": list(nat.reservations), "kinds": nat.connection_kinds(),
                "circuits": len(nat.relay._active_relays)}
    if op == "disconnect":
        await host.disconnect(peer)
        return {"kind": nat.connection_kind(peer)}
    if op == "connect":  # times a fresh connection: through the relay, or direct
        start = time.perf_counter()
        await host.connect(peer, cmd["addrs"], timeout=20)
        return {"ms": (time.perf_counter() - start) * 1000, "kind": nat.connection_kind(peer)}
    if op == "ping":
        rtts = []
        for _ in range(cmd["n"]):
            rtts.append(await host.ping(peer, timeout=10))
        return {"ms": rtts, "kind": nat.connection_kind(peer)}
    if op == "punch":
        start = time.perf_counter()
        await nat._punch(peer)
        return {"ms": (time.perf_counter() - start) * 1000, "kind": nat.connection_kind(peer)}
    raise ValueError(f"unknown op {op}")


# ---- part 1: the driver ---------------------------------------------------------------


class Worker:
    def __init__(self, prefix: tuple[str, ...], listen: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, __file__, "--worker", "--listen", listen, *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        ready = self.read()
        if "error" in ready:
            raise RuntimeError(ready["error"])
        self.peer_id, self.addrs = ready["peer_id"], ready["addrs"]

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("worker exited")
        return json.loads(line)  # type: ignore[no-any-return]

    def __call__(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        reply = self.read()
        if "error" in reply:
            raise RuntimeError(f"{op}: {reply['error']}")
        return reply

    def wait(self, what: str, check: Any, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self("status")
            if check(status):
                return status
            time.sleep(1.0)
        raise RuntimeError(f"timed out waiting for {what}: {status}")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _summary(name: str, values: list[float]) -> str:
    return (f"| {name} | {len(values)} | {pct(values, 0.5):.1f} | {pct(values, 0.99):.1f} "
            f"| {sum(values) / len(values):.1f} |")


def nat_part(rounds: int, pings: int) -> list[str]:
    from tests.integration.netns import lab, two_nats

    rows = []
    with lab() as net:
        world = two_nats(net)
        world.separate()
        workers = []
        try:
            relay = Worker(net.exec_prefix(world.relay), f"/ip4/{world.relay_ip}/tcp/4001",
                           "--relay")
            workers.append(relay)
            relay_addr = relay.addrs[0]
            a, b = (Worker(net.exec_prefix(world.hosts[side]),
                           f"/ip4/{world.host_ips[side]}/tcp/4001", "--bootstrap", relay_addr)
                    for side in "ab")
            workers += [a, b]
            status_a = a.wait("a to hold a relay slot", lambda s: s["relays"] != [])
            b.wait("b to know it is private", lambda s: s["reachability"] == "private")
            circuit = [x for x in status_a["addrs"] if "/p2p-circuit" in x]

            def fresh(dialer: Worker, peer: str, addrs: list[str]) -> dict[str, Any]:
                # py-libp2p's relay files circuits by source peer: a new circuit from B while
                # the old one still winds down is torn down with it. Wait for the relay.
                dialer("disconnect", peer=peer)
                relay.wait("the old circuit to close", lambda s: s["circuits"] == 0, 30)
                return dialer("connect", peer=peer, addrs=addrs)

            relayed = [fresh(b, a.peer_id, circuit) for _ in range(rounds)]
            assert all(r["kind"] == "relayed" for r in relayed), relayed
            rows.append(_summary("connection setup, relayed (B dials A through the relay)",
                                 [r["ms"] for r in relayed]))
            rtt_relayed = b("ping", peer=a.peer_id, n=pings)
            rows.append(_summary("ping RTT, relayed", rtt_relayed["ms"]))

            world.join()
            punches = []
            for _ in range(min(rounds, 5)):
                fresh(b, a.peer_id, circuit)
                punched = b("punch", peer=a.peer_id)
                if punched["kind"] == "direct":
                    punches.append(punched["ms"])
            rows.append(_summary("hole punch, relayed -> direct (DCUtR)", punches)
                        if punches else "| hole punch | 0 | failed | | |")
            rtt_direct = b("ping", peer=a.peer_id, n=pings)
            assert rtt_direct["kind"] == "direct", rtt_direct
            rows.append(_summary("ping RTT, direct (hole-punched)", rtt_direct["ms"]))
            direct = []
            for _ in range(rounds):
                a("disconnect", peer=relay.peer_id)
                time.sleep(0.5)
                direct.append(a("connect", peer=relay.peer_id, addrs=[relay_addr])["ms"])
            rows.append(_summary("connection setup, direct (A dials the public relay)",
                                 direct))
        finally:
            for worker_proc in workers:
                worker_proc.stop()
    return rows


# ---- part 2: js-libp2p <-> py gossip -------------------------------------------------


async def js_part(messages: int) -> list[str]:
    from tests.interop.jspeer import JsPeer, ensure_installed

    ensure_installed()
    py_to_js: list[float] = []
    js_to_py: list[float] = []
    key = Ed25519PrivateKey.generate()
    async with MeshHost(key, listen=["/ip4/127.0.0.1/tcp/0"],
                        gossip=GossipSettings(heartbeat_s=0.5)) as host:
        subscription = await host.subscribe(TOPIC)
        with JsPeer() as js:
            js.command("subscribe", topic=TOPIC)
            await trio.to_thread.run_sync(lambda: js.command("dial", addr=host.listen_addrs()[0]))
            for _ in range(100):
                if host.topic_peers(TOPIC):
                    break
                await trio.sleep(0.1)
            await trio.sleep(2.0)  # let both sides graft the mesh
            for i in range(messages):
                await host.publish(TOPIC, json.dumps({"t": time.time(), "i": i}).encode())
                await trio.sleep(0.02)
            await trio.sleep(2.0)
            for message in js.received(TOPIC):
                sent = json.loads(message["data"])["t"]
                py_to_js.append((message["at"] - sent) * 1000)

            all_in = trio.Event()

            async def receive() -> None:
                while len(js_to_py) < messages:
                    message = await anext(subscription)
                    body = json.loads(message.data)
                    if "js" in body:  # not one of this host's own, delivered locally too
                        js_to_py.append((time.time() - body["t"]) * 1000)
                all_in.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                for i in range(messages):
                    stamp = json.dumps({"js": True, "i": i})
                    await trio.to_thread.run_sync(
                        lambda s=stamp: js.command("publish", topic=TOPIC, stamp=s))
                with trio.move_on_after(10):
                    await all_in.wait()
                nursery.cancel_scope.cancel()
    return [_summary(f"gossip py -> js ({len(py_to_js)}/{messages} delivered)", py_to_js),
            _summary(f"gossip js -> py ({len(js_to_py)}/{messages} delivered)", js_to_py)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", nargs="*", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--relay", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--pings", type=int, default=50)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--skip-nat", action="store_true")
    parser.add_argument("--skip-js", action="store_true")
    args = parser.parse_args()
    if args.worker:
        trio.run(worker, args.listen, args.bootstrap, args.relay)
        return
    rows = ["| what | samples | p50 ms | p99 ms | mean ms |", "| --- | --- | --- | --- | --- |"]
    if not args.skip_nat:
        rows += nat_part(args.rounds, args.pings)
    if not args.skip_js:
        rows += trio.run(js_part, args.messages)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
