"""Drive the js-libp2p peer of tests/interop/js/peer.mjs from Python (tests and bench/)."""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

JS_DIR = Path(__file__).resolve().parent / "js"


def node_available() -> bool:
    return shutil.which("node") is not None and shutil.which("npm") is not None


def ensure_installed() -> None:
    """Install the js peer's packages from package-lock.json (once; npm ci is idempotent
    but slow, so an existing node_modules with the lock's packages is kept)."""
    marker = JS_DIR / "node_modules" / ".package-lock.json"
    lock = JS_DIR / "package-lock.json"
    if marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime:
        return
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS_DIR,
                   check=True, timeout=600)


class JsPeer:
    """One js-libp2p node in a subprocess; commands in, events out (see peer.mjs)."""

    def __init__(self, *, prefix: tuple[str, ...] = (), listen: str | None = None) -> None:
        env = {**os.environ, **({"JS_LISTEN": listen} if listen else {})}
        self.proc = subprocess.Popen(
            [*prefix, "node", str(JS_DIR / "peer.mjs")], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1, env=env,
        )
        self.messages: list[dict[str, Any]] = []
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self._reply(30)
        if ready.get("event") != "ready":
            raise AssertionError(f"js peer did not start: {ready} {self.stderr()}")
        self.peer_id: str = ready["peer_id"]
        self.addrs: list[str] = ready["addrs"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            if event.get("event") == "message":
                event["data"] = base64.b64decode(event["data"])
                with self._lock:
                    self.messages.append(event)
            else:
                self._replies.put(event)
        self._replies.put({"event": "exit"})

    def _reply(self, timeout: float) -> dict[str, Any]:
        try:
            return self._replies.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"js peer silent for {timeout} s: {self.stderr()}") from None

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read()[-2000:]

    def command(self, op: str, timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        reply = self._reply(timeout)
        if reply.get("event") in ("error", "exit"):
            raise AssertionError(f"js {op} failed: {reply} {self.stderr()}")
        return reply

    def publish(self, topic: str, data: bytes) -> dict[str, Any]:
        return self.command("publish", topic=topic, data=base64.b64encode(data).decode())

    def request(self, addr: str, protocol: str, data: bytes, *, timeout_s: float = 5.0
                ) -> tuple[bytes, str | None]:
        """Open a stream, send ``data``; what came back before the stream ended, and why."""
        reply = self.command("request", addr=addr, protocol=protocol, timeout=timeout_s + 10,
                             data=base64.b64encode(data).decode(),
                             timeout_ms=int(timeout_s * 1000))
        return base64.b64decode(reply["data"]), reply["error"]

    def received(self, topic: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages if m["topic"] == topic]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> JsPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

