"""Fuzz campaign of every network decoder: a benchmark of robustness, not a test.

Each decoder gets ``--frames`` generated inputs (10^6 by default): random bytes; byte-level
mutations of valid frames (bit flips, splices, cuts, repeats, interesting bytes such as
msgpack headers declaring 4 GiB); deep nesting; and structure-aware mutations (a field of a
decoded valid message replaced by a hostile value, then encoded again, and for signed
envelopes signed again, so the checks behind the signature are reached too). Anything a
decoder raises other than its ProtocolError family is a crash; a decode over 1 s is a hang
(a watchdog alarm ends one over 10 s). Each decoder runs in its own process, so its peak
RSS is its own. Crashes are written with their input (hex) to ``--crashes``.

    python bench/fuzz_decoders.py                    # 10^6 frames per decoder
    python bench/fuzz_decoders.py --frames 20000 --decoders record memsync

The live half (fuzzed frames on a running node's streams and topics) is
bench/fuzz_live.py. Results: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import random
import resource
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protocols.a2a import (
    AgentCard,
    CancelTask,
    GetAgentCard,
    GetTask,
    ListTasks,
    Message,
    SendMessage,
    SendStreamingMessage,
    Task,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
    TextPart,
    decode_request,
    decode_response,
    encode_end,
    encode_error,
    encode_event,
    encode_request,
    encode_result,
)
from protocols.a2a.jsonrpc import parse_rpc, rpc_request
from protocols.a2a.model import AgentSkill, DataPart
from protocols.a2a.wire import card_from_wire, card_to_wire
from protocols.codec import MAX_FRAME, FrameDecoder, encode_frame, pack, unpack
from protocols.envelope import decode_envelope, encode_envelope, seal
from protocols.errors import ProtocolError
from protocols.memsync import (
    Batch,
    Bye,
    Pull,
    RecordsReceived,
    Summary,
    SyncClient,
    SyncServer,
    decode_announcement,
    encode_announcement,
    encode_message,
)
from protocols.peerid import Signer
from protocols.presence import (
    HELLO,
    PRESENCE,
    Hello,
    Presence,
    hello_from_envelope,
    presence_from_envelope,
)
from protocols.records import new_record, new_tombstone, record_from_wire, record_to_wire
from protocols.trust import TRUST, TrustAttestation, attestation_from_envelope

NET = "fuzz-net"
SIGNER = Signer.from_seed(bytes(range(32)))
PEERS = [Signer.from_seed(bytes([i]) * 32).peer_id for i in range(1, 40)]
HANG_S = 1.0
WATCHDOG_S = 10
#: Bytes msgpack reads as headers declaring huge or odd things.
INTERESTING = [b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff",
               b"\xc6\xff\xff\xff\xff", b"\xdc\xff\xff", b"\xde\xff\xff", b"\xc1", b"\xd4\x00\x00",
               b"\xc7\xff\x00", b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00",
               b"\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00", b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff",
               b"\xd3\x80\x00\x00\x00\x00\x00\x00\x00", b"\x91" * 64, b"\x81\xa1k" * 40,
               b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\xc0", b"\xc2", b"\xc3"]


class Timeout(Exception):
    pass


# ---- the decoders, as the node runs them ---------------------------------------------------


def _frames(data: bytes) -> None:
    decoder = FrameDecoder(MAX_FRAME)
    step = 1 + len(data) % 7 * 97
    for i in range(0, len(data), step):
        decoder.feed(data[i : i + step])
        for frame in decoder.frames():
            unpack(frame)


def _presence(data: bytes) -> None:
    for card in presence_from_envelope(decode_envelope(data)).agents:  # as the asker does
        card_from_wire(card)


def _memsync_server(data: bytes) -> None:
    """Frame by frame, answering each as the Replicator does (a client sends its next
    message only after the answer)."""
    server = SyncServer(NET)
    splitter = FrameDecoder(MAX_FRAME)
    splitter.feed(data)
    chunks = [encode_frame(frame) for frame in splitter.frames()]
    chunks.append(data[sum(map(len, chunks)) :])  # an incomplete frame, if any
    for chunk in filter(None, chunks):
        for event in server.receive_data(chunk):
            if isinstance(event, Summary):
                server.send_summary({SIGNER.peer_id: 2})
            elif isinstance(event, Pull):
                server.send_batch([RECORD], more=False)


def _memsync_client(data: bytes) -> None:
    client = SyncClient(NET, {SIGNER.peer_id: 1})
    client.data_to_send()
    for event in client.receive_data(data):
        if isinstance(event, RecordsReceived):
            client.applied()


DECODERS: dict[str, Callable[[bytes], object]] = {
    "frames": _frames,
    "envelope": decode_envelope,
    "presence": _presence,
    "hello": lambda d: hello_from_envelope(decode_envelope(d)),
    "attestation": lambda d: attestation_from_envelope(decode_envelope(d)),
    "record": lambda d: record_from_wire(unpack(d)),
    "memsync-server": _memsync_server,
    "memsync-client": _memsync_client,
    "announcement": decode_announcement,
    "a2a-request": decode_request,
    "a2a-response": decode_response,
    "jsonrpc": parse_rpc,
}


# ---- valid frames to start from ------------------------------------------------------------

CARD = AgentCard("Fuzz agent", "Answers questions about fuzzing.", "1.0",
                 skills=(AgentSkill("fuzz", "Fuzz", "Finds crashes.", tags=("test",)),))
MESSAGE = Message("user", (TextPart("How do I flush?"), DataPart({"k": [1, 2, {"x": None}]})),
                  "m-1", "ctx-1")
TASK = Task("t-1", "ctx-1", TaskStatus(TaskState.WORKING, MESSAGE, 1.0), (MESSAGE,))
OPS = [SendMessage(MESSAGE), SendStreamingMessage(MESSAGE), GetTask("t-1", 3),
       ListTasks("ctx-1", TaskState.COMPLETED, 10, 2, True), CancelTask("t-1"), GetAgentCard()]


@dataclass
class Seed:
    """A valid input, and (for structure-aware mutation) the object it encodes and how."""

    data: bytes
    obj: Any = None
    encode: Callable[[Any], bytes] | None = None


def _sealed(type_: str, body: Any) -> Seed:
    def encode(obj: Any) -> bytes:
        return encode_envelope(seal(SIGNER, NET, type_, obj, now=time.time()))

    return Seed(encode(body), body, encode)


RECORD = new_record(SIGNER, collection="expert_knowledge", tenant=NET, text="Flush seals.",
                    kind="note", agent="a", created=1.0, seq=1, meta={"source": "a.md"})


def seeds() -> dict[str, list[Seed]]:
    record = RECORD
    tomb = new_tombstone(SIGNER, record, created=2.0, seq=2)
    presence = Presence(SIGNER.peer_id, ("/ip4/127.0.0.1/tcp/4001",), "0.1", 3, 30.0, 0.5,
                        (card_to_wire(CARD),)).to_body()
    trust = TrustAttestation(SIGNER.peer_id, 1, 1.0, {p: 0.02 for p in PEERS}).to_body()
    to_server = [Summary(NET, {SIGNER.peer_id: 1}), Pull(SIGNER.peer_id, 0, 2), Bye()]
    to_client = [Summary(NET, {SIGNER.peer_id: 2}),
                 Batch(SIGNER.peer_id, (record_to_wire(tomb),), True)]
    server_stream = b"".join(encode_message(m) for m in to_server)
    client_stream = b"".join(encode_message(m) for m in to_client)
    responses = [encode_result("r", TASK), encode_result("r", CARD), encode_result("r", (TASK,)),
                 encode_event("r", TaskStatusUpdateEvent("t-1", "ctx-1", TASK.status, True)),
                 encode_error("r", -32001, "no such task"), encode_end("r")]
    return {
        "frames": [Seed(server_stream), Seed(encode_frame(pack({"a": [1, 2.5, "x", b"y"]})))],
        "envelope": [_sealed(PRESENCE, presence), _sealed(TRUST, trust)],
        "presence": [_sealed(PRESENCE, presence)],
        "hello": [_sealed(HELLO, Hello(("/ip4/10.0.0.1/tcp/1",), "0.1").to_body())],
        "attestation": [_sealed(TRUST, trust)],
        "record": [Seed(pack(record_to_wire(r)), record_to_wire(r), pack) for r in (record, tomb)],
        "memsync-server": [Seed(server_stream), Seed(encode_message(to_server[0]))],
        "memsync-client": [Seed(client_stream), Seed(encode_message(to_client[0]))],
        "announcement": [Seed(encode_announcement(r), unpack(encode_announcement(r)), pack)
                         for r in (record, tomb)],
        "a2a-request": [Seed(encode_request("r", op), unpack(encode_request("r", op)), pack)
                        for op in OPS],
        "a2a-response": [Seed(r, unpack(r), pack) for r in responses],
        "jsonrpc": [Seed(json.dumps(rpc_request(i, op)).encode(), rpc_request(i, op),
                         lambda o: json.dumps(o).encode()) for i, op in enumerate(OPS)],
    }


# ---- generators ----------------------------------------------------------------------------


def _hostile_value(rng: random.Random) -> Any:
    choice = rng.randrange(16)
    if choice == 0:
        return rng.choice([2**63 - 1, -(2**63), 2**64 - 1, 0, -1, 1])
    if choice == 1:
        return rng.choice([float("nan"), float("inf"), -0.0, 1e308, 5e-324])
    if choice == 2:
        return "x" * rng.choice([0, 1, 65, 513, 4097, 40000, 300000])
    if choice == 3:
        return b"\0" * rng.choice([0, 1, 63, 64, 65, 100000])
    if choice == 4:
        deep: Any = None
        for _ in range(rng.choice([10, 31, 32, 33, 100, 1000])):
            deep = [deep] if rng.random() < 0.5 else {"k": deep}
        return deep
    if choice == 5:
        return [rng.choice([None, 0, "", {}]) for _ in range(rng.choice([10, 1025, 70000]))]
    if choice == 6:
        return {f"k{i}": i for i in range(rng.choice([33, 1025, 9000]))}
    if choice == 7:
        return rng.choice([*PEERS, "", "12D3KooW", "1" * 52, SIGNER.peer_id + "x"])
    if choice == 8:
        return rng.choice(["\u0000", "é" * 20000, "/ip4/1.2.3.4/tcp/1", "tombstone", "a/b"])
    return rng.choice([None, True, False, "", [], {}, 0, 1.5, b"", "note", "expert_knowledge"])


#: Made once: building a 70,000-item list for every frame would cost more than decoding it.
_HOSTILE = [_hostile_value(random.Random(i)) for i in range(400)]


def hostile_value(rng: random.Random) -> Any:
    return rng.choice(_HOSTILE)


def mutate_object(obj: Any, rng: random.Random) -> Any:
    """A copy of ``obj`` with one place (at a random depth) replaced, removed or added to."""
    if not isinstance(obj, dict | list) or not obj or rng.random() < 0.25:
        return hostile_value(rng)
    if isinstance(obj, dict):
        out = dict(obj)
        key = rng.choice(list(out))
        roll = rng.random()
        if roll < 0.15:
            del out[key]
        elif roll < 0.25:
            out[rng.choice(["extra", "v", "t", "id", 1, b"k"])] = hostile_value(rng)
        else:
            out[key] = mutate_object(out[key], rng)
        return out
    items = list(obj)
    i = rng.randrange(len(items))
    items[i] = mutate_object(items[i], rng)
    return items


def mutate_bytes(data: bytes, rng: random.Random, others: list[Seed]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice([1, 1, 1, 2, 3, 8])):
        roll = rng.randrange(8)
        at = rng.randrange(len(buf) + 1)
        if roll == 0 and buf:
            buf[min(at, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif roll == 1 and buf:
            buf[min(at, len(buf) - 1)] = rng.randrange(256)
        elif roll == 2:
            buf[at:at] = rng.choice(INTERESTING)
        elif roll == 3:
            del buf[at : at + rng.randrange(1, 64)]
        elif roll == 4:
            buf = buf[:at]
        elif roll == 5:
            other = rng.choice(others).data
            cut = rng.randrange(len(other) + 1)
            buf[at:] = other[cut:]
        elif roll == 6 and buf:
            chunk = bytes(buf[at : at + rng.randrange(1, 32)])
            buf[at:at] = chunk * rng.choice([2, 16, 1000])
        else:
            buf[at : at + 5] = rng.choice(INTERESTING)
    return bytes(buf[: 2 * MAX_FRAME])


def generate(rng: random.Random, pool: list[Seed]) -> bytes:
    roll = rng.random()
    if roll < 0.3:
        size = rng.choice([rng.randrange(16), rng.randrange(256), rng.randrange(4096)])
        return rng.randbytes(size)
    if roll < 0.35:
        return rng.choice([b"\x91", b"\x81\xa1k", b"\xdc\x00\x01"]) * rng.randrange(1, 40000)
    seed = rng.choice(pool)
    if roll < 0.8 or seed.encode is None:
        return mutate_bytes(seed.data, rng, pool)
    try:
        return seed.encode(mutate_object(seed.obj, rng))
    except (ValueError, TypeError, OverflowError, RecursionError):  # not encodable
        return mutate_bytes(seed.data, rng, pool)


# ---- one decoder's campaign ----------------------------------------------------------------


@dataclass
class Report:
    decoder: str
    frames: int = 0
    refused: int = 0
    crashes: Counter[str] = field(default_factory=Counter)
    hangs: int = 0
    slowest_s: float = 0.0
    peak_rss_mb: float = 0.0
    seconds: float = 0.0
    examples: dict[str, str] = field(default_factory=dict)


def _alarm(signum: int, frame: Any) -> None:
    raise Timeout


def campaign(name: str, frames: int, seed: int) -> Report:
    rng = random.Random(seed)
    decode, pool = DECODERS[name], seeds()[name]
    for valid in pool:  # else the campaign would only ever reach the first check
        decode(valid.data)
    report = Report(name)
    signal.signal(signal.SIGALRM, _alarm)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    for _ in range(frames):
        data = generate(rng, pool)
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, WATCHDOG_S)
        try:
            decode(data)
        except ProtocolError:
            report.refused += 1
        except Timeout:
            report.hangs += 1
            report.examples.setdefault("hang", data[:4096].hex())
        except Exception as exc:  # the finding: anything but the decoder's own errors
            where = f"{type(exc).__name__}: {str(exc)[:80]}"
            report.crashes[where] += 1
            report.examples.setdefault(where, data[:4096].hex())
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        spent = time.perf_counter() - t0
        report.slowest_s = max(report.slowest_s, spent)
        if spent > HANG_S:
            report.hangs += 1
        report.frames += 1
    report.seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report.peak_rss_mb = round(max(peak - base_rss, 0) / 1024, 1)
    return report


def _run(args: tuple[str, int, int]) -> Report:
    return campaign(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--decoders", nargs="*", default=list(DECODERS), choices=list(DECODERS))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--crashes", type=Path, default=Path("fuzz-crashes.json"))
    args = parser.parse_args()
    jobs = [(name, args.frames, args.seed + i) for i, name in enumerate(args.decoders)]
    print(f"{platform.node()} {platform.machine()} {multiprocessing.cpu_count()} cores, "
          f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}")
    print("| decoder | frames | refused | crashes | hangs > 1 s | slowest ms | peak RSS MB | s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    found: dict[str, dict[str, str]] = {}
    # A fresh process per decoder: its peak RSS is its own, and a crash of the
    # interpreter itself (not an exception) shows as a failed job.
    with multiprocessing.get_context("fork").Pool(args.jobs, maxtasksperchild=1) as pool:
        for r in pool.imap(_run, jobs):
            print(f"| {r.decoder} | {r.frames:,} | {r.refused:,} | {sum(r.crashes.values())} | "
                  f"{r.hangs} | {r.slowest_s * 1000:.1f} | {r.peak_rss_mb} | {r.seconds:.0f} |",
                  flush=True)
            if r.crashes or r.hangs:
                found[r.decoder] = r.examples
                for where, count in r.crashes.items():
                    print(f"    crash x{count}: {where}", flush=True)
    if found:
        args.crashes.write_text(json.dumps(found, indent=1))
        print(f"inputs of the crashes and hangs: {args.crashes}")


if __name__ == "__main__":
    main()
