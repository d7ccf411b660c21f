"""What a process costs while it runs: CPU seconds, resident memory and libp2p bytes on the wire.

Linux only (reads /proc and asks `ss` for per-socket TCP counters). Used by the benchmarks
that run real daemons, to report idle cost per node.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")
_SOCKET = re.compile(r"\d+\s+\d+\s+(\S+):(\d+)\s+(\S+):(\d+)\s+users:\(\((.*)\)\)")
_PID = re.compile(r"pid=(\d+)")
_BYTES = re.compile(r"bytes_(sent|received):(\d+)")


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (a Milvus Lite server is a child process)."""
    out = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = f.read().split()
    except OSError:
        return out
    for child in children:
        out += tree(int(child))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` (not its children)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` alone (not its children), MiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def socket_bytes(pids: Iterable[int], ports: set[int]) -> dict[int, int]:
    """Bytes sent + received so far by each of ``pids`` on TCP connections whose either end
    is one of ``ports`` (the mesh's libp2p listen ports): the node's mesh traffic."""
    wanted = set(pids)
    out = dict.fromkeys(wanted, 0)
    text = subprocess.run(["ss", "-tinpH", "state", "established"], capture_output=True,
                          text=True, check=False).stdout
    pairs: list[tuple[str, str]] = []
    for line in text.splitlines():
        if line[:1].isspace() and pairs:
            pairs[-1] = (pairs[-1][0], pairs[-1][1] + line)
        else:
            pairs.append((line, ""))
    for head, info in pairs:
        match = _SOCKET.match(head.strip())
        if not match:
            continue
        if int(match.group(2)) not in ports and int(match.group(4)) not in ports:
            continue
        owners = {int(p) for p in _PID.findall(match.group(5))} & wanted
        total = sum(int(v) for _, v in _BYTES.findall(info))
        for pid in owners:
            out[pid] += total
    return out


@dataclass
class Sample:
    cpu_s: dict[int, float]
    bytes: dict[int, int]


def sample(pids: list[int], ports: set[int]) -> Sample:
    """CPU of each process with its children (a Milvus Lite server, if it has one), and
    its mesh bytes so far."""
    return Sample({p: sum(cpu_seconds(c) for c in tree(p)) for p in pids},
                  socket_bytes(pids, ports))
