"""Start-up benchmark: one daemon alone, from launch to serving and to its memory open.

Makes a node home (untimed), launches ``meshnode start`` from the current directory's code
and polls its API every 50 ms: wall and CPU seconds (of the daemon process, from /proc) when
the API first answers and when ``/v1/status`` says the memory is open (a daemon that opens
its memory before serving has no ``memory`` field: both are the same moment); then its RSS
after ``--idle`` seconds. The daemon's own log line ``node started`` breaks the time down
by phase (``startup``).

    python bench/bench_startup.py --runs 3
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from procstats import cpu_seconds, rss_mb

from meshnode.cli.client import DaemonClient
from meshnode.errors import MeshnodeError
from meshnode.node.home import read_runtime


def _status(home: Path, pid: int) -> dict[str, object] | None:
    runtime = read_runtime(home)
    if runtime is None or runtime.get("pid") != pid:
        return None
    try:
        return DaemonClient(home, timeout=5).get("/v1/status")  # type: ignore[no-any-return]
    except MeshnodeError:
        return None


def run(idle: float) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "node"
        subprocess.run([sys.executable, "-m", "meshnode.cli", "init", "--home", str(home),
                        "--network-id", "bench"], check=True, capture_output=True)
        load = os.getloadavg()[0]
        launched = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshnode.cli", "start", "--home", str(home), "--listen",
             "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--log-level", "warning"],
            stderr=subprocess.DEVNULL)
        try:
            serving = opened = None
            while opened is None:
                if time.monotonic() - launched > 300 or proc.poll() is not None:
                    raise SystemExit("the daemon did not start")
                status = _status(home, proc.pid)
                if status is not None:
                    now = (time.monotonic() - launched, cpu_seconds(proc.pid))
                    serving = serving or now
                    if status.get("memory", "open") == "open":
                        opened = now
                time.sleep(0.05)
            time.sleep(idle)
            assert serving is not None
            return (f"{serving[0]:8.2f} {serving[1]:6.2f}  {opened[0]:8.2f} {opened[1]:6.2f}  "
                    f"{rss_mb(proc.pid):6.0f}  {load:4.1f}")
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=20.0,
                        help="seconds idle before RSS is read (default 20)")
    args = parser.parse_args()
    print("serving: wall s, CPU s  memory open: wall s, CPU s  RSS MB  load")
    for _ in range(args.runs):
        print(run(args.idle), flush=True)


if __name__ == "__main__":
    main()
