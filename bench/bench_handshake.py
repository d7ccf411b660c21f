"""Connection setup with and without a network secret (libp2p PSK), over real hosts.

Two MeshHosts (Noise + yamux) on loopback in one process; one dials the other, the
connection is closed, repeat. With a secret every byte is also Salsa20-encrypted under the
pre-shared key, starting before multistream-select. Reports p50/p99 of connect() and the
throughput of a 4 MiB stream transfer both ways.

    python bench/bench_handshake.py --rounds 40
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bootstrap import network_psk
from meshnode.config import GossipSettings
from meshnode.node.host import MeshHost
from meshnode.node.streams import ByteStream
from meshnode.stats import quantile

PROTOCOL = "/meshnode/bench-bulk/1.0.0"
PAYLOAD = 4 * 1024 * 1024



async def sink(stream: ByteStream) -> None:
    received = 0
    while received < PAYLOAD:
        data = await stream.read(65536)
        if not data:
            break
        received += len(data)
    await stream.write(b"k")


async def measure(psk: str | None, rounds: int) -> tuple[list[float], float]:
    listen = ["/ip4/127.0.0.1/tcp/0"]
    gossip = GossipSettings()
    keys = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    async with MeshHost(keys[0], listen=listen, gossip=gossip, psk=psk) as a, \
            MeshHost(keys[1], listen=listen, gossip=gossip, psk=psk) as b:
        b.set_stream_handler(PROTOCOL, sink)
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            await a.connect(b.peer_id, b.listen_addrs(), timeout=10)
            times.append((time.perf_counter() - start) * 1000)
            await a.disconnect(b.peer_id)
            await trio.sleep(0.05)
        await a.connect(b.peer_id, b.listen_addrs(), timeout=10)
        start = time.perf_counter()
        async with a.open_stream(b.peer_id, PROTOCOL, timeout=10) as stream:
            chunk = b"x" * 65536
            for _ in range(PAYLOAD // len(chunk)):
                await stream.write(chunk)
            await stream.read(1)
        mbps = PAYLOAD / (time.perf_counter() - start) / 1e6
        return times, mbps


async def main(rounds: int) -> None:
    print("mode      connect p50 ms  p99 ms  bulk MB/s")
    for label, psk in (("public", None), ("private", network_psk("bench", "a secret"))):
        times, mbps = await measure(psk, rounds)
        print(f"{label:8}  {quantile(times, .5):14.1f}  {quantile(times, .99):6.1f}  {mbps:9.1f}",
              flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    trio.run(main, parser.parse_args().rounds)
