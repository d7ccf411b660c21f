"""DaemonClient: how the CLI talks to the local daemon's HTTP API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from meshnode.errors import ApiError, DaemonNotRunning, MeshnodeError
from meshnode.home import load_token, read_runtime


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

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout):
            # Connected, so the daemon runs: it is only slow. Not "not running".
            raise MeshnodeError(
                f"the daemon for {self._home} did not answer within {self._timeout:g} s"
            ) from None
        except httpx.TransportError:
            raise DaemonNotRunning(
                f"meshnode is not running for {self._home} (start it: meshnode start)"
            ) from None
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

    def close(self) -> None:
        self._http.close()
