"""DaemonClient: how the CLI talks to the local daemon's HTTP API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from meshnode.errors import ApiError, DaemonNotRunning, MeshnodeError
from meshnode.node.home import load_token, read_runtime


class DaemonClient:
    def __init__(self, home: Path, *, timeout: float = 30.0) -> None:
        runtime = read_runtime(home)
        if runtime is None or not isinstance(runtime.get("api"), str):
            raise DaemonNotRunning(f"meshnode is not running for {home} (start it: meshnode start)")
        self._home = home
        self._timeout = timeout
        self._http = httpx.Client(
            base_url=runtime["api"],
            headers={"Authorization": f"Bearer {load_token(home)}"},
            timeout=timeout,
        )

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout):
            # Connected, so the daemon runs: it is only slow. Not "not running".
            raise MeshnodeError(
                f"the daemon for {self._home} did not answer within {self._timeout:g} s"
            ) from None
        except httpx.TransportError:
            raise DaemonNotRunning(
                f"meshnode is not running for {self._home} (start it: meshnode start)"
            ) from None

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        with self._errors():
            response = self._http.request(method, path, **kwargs)
        return self._payload(response)

    @staticmethod
    def _payload(response: httpx.Response) -> Any:
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": response.text}
        if response.status_code >= 400:
            message = payload.get("error") if isinstance(payload, dict) else None
            raise ApiError(response.status_code, message or f"HTTP {response.status_code}")
        return payload

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, json=body)

    def stream_lines(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """POST ``body`` and yield each JSON line of the answer as it arrives."""
        with self._errors(), self._http.stream("POST", path, json=body) as response:
            if response.status_code >= 400:
                response.read()
                self._payload(response)
            for line in response.iter_lines():
                if line.strip():
                    yield json.loads(line)

    def close(self) -> None:
        self._http.close()
