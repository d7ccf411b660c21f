"""LanDiscovery: nodes of one mesh on one LAN find each other by mDNS, no bootstrap needed.

One service owns a zeroconf instance (python-zeroconf runs its own asyncio thread and
calls browser handlers on a thread of its own). It announces this node's LAN addresses
under the mesh's DNS-SD service type (``bootstrap.lan``), browses for the others, and keeps
what it finds as dial candidates for membership, which dials them like peers learned by
gossip: the hello handshake decides who is really of this mesh. Nothing found here is
trusted; records are parsed by ``bootstrap.lan`` and the candidate list is bounded.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable
from contextlib import suppress
from functools import partial
from typing import Any

import trio
from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

from bootstrap.lan import decode_txt, encode_txt, lan_addrs, service_type
from bootstrap.network import BootstrapError

log = logging.getLogger(__name__)
#: Candidates kept at once (a hostile LAN can announce any number of services).
MAX_CANDIDATES = 64
RESOLVE_TIMEOUT_MS = 3000
READVERTISE_S = 30.0
CLOSE_TIMEOUT_S = 5.0


class LanDiscovery:
    def __init__(
        self,
        *,
        peer_id: str,
        network_id: str,
        secret: str,
        addrs: Callable[[], list[str]],
    ) -> None:
        self.peer_id = peer_id
        self.service_type = service_type(network_id, secret)
        self._addrs = addrs
        # Random, as the libp2p mDNS spec asks: the instance name does not track the node.
        self._name = f"{secrets.token_hex(16)}.{self.service_type}"
        self._candidates: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._by_name: dict[str, str] = {}
        self.announced: list[str] = []
        self.discovered = 0
        self.rejected = 0
        self._limiter = trio.CapacityLimiter(1)

    def candidates(self) -> dict[str, tuple[str, ...]]:
        """Peers seen on the LAN and their addresses, for the dialer."""
        return dict(self._candidates)

    def snapshot(self) -> dict[str, Any]:
        return {"service": self.service_type, "announced": list(self.announced),
                "candidates": len(self._candidates), "discovered": self.discovered,
                "rejected": self.rejected}

    # ---- events from zeroconf's threads, applied on the trio side ----------------------

    def _learn(self, name: str, raw: bytes | None) -> None:
        if raw is None:  # the service went away
            peer_id = self._by_name.pop(name, None)
            if peer_id is not None:
                self._candidates.pop(peer_id, None)
            return
        try:
            peer_id, addrs = decode_txt(raw)
        except BootstrapError as exc:
            self.rejected += 1
            log.debug("unusable mDNS record", extra={"name": name[:80], "reason": str(exc)})
            return
        if peer_id == self.peer_id:
            return
        if peer_id not in self._candidates:
            self.discovered += 1
            log.info("peer found on the LAN", extra={"peer": peer_id, "addrs": list(addrs)})
        self._candidates[peer_id] = addrs
        self._candidates.move_to_end(peer_id)
        self._by_name[name] = peer_id
        while len(self._candidates) > MAX_CANDIDATES:
            self._candidates.popitem(last=False)
        if len(self._by_name) > 4 * MAX_CANDIDATES:
            self._by_name = {n: p for n, p in self._by_name.items() if p in self._candidates}

    # ---- lifecycle ------------------------------------------------------------------

    def _info(self, addrs: list[str]) -> ServiceInfo:
        port = int(addrs[0].split("/")[4]) if addrs else 0
        hosts = sorted({a.split("/")[2] for a in addrs if a.startswith("/ip4/")})
        server = f"{self._name.split('.')[0]}.local."
        return ServiceInfo(self.service_type, self._name, port=port, server=server,
                           properties=encode_txt(addrs), parsed_addresses=hosts)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        token = trio.lowlevel.current_trio_token()
        zc = await trio.to_thread.run_sync(partial(Zeroconf, ip_version=IPVersion.V4Only),
                                           limiter=self._limiter)

        def on_change(zeroconf: Zeroconf, service_type: str, name: str,
                      state_change: ServiceStateChange) -> None:
            # On the browser's thread: resolving may block it, never trio.
            raw: bytes | None = None
            if state_change is not ServiceStateChange.Removed:
                info = zeroconf.get_service_info(service_type, name, timeout=RESOLVE_TIMEOUT_MS)
                if info is None:
                    return
                raw = info.text
            with suppress(trio.RunFinishedError):
                token.run_sync_soon(self._learn, name, raw)

        browser: ServiceBrowser | None = None
        info: ServiceInfo | None = None
        try:
            browser = ServiceBrowser(zc, self.service_type, handlers=[on_change])
            task_status.started()
            while True:
                addrs = lan_addrs(self._addrs())
                if addrs != self.announced:
                    info = await self._announce(zc, info, addrs)
                await trio.sleep(READVERTISE_S)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S):
                await trio.to_thread.run_sync(self._close, zc, browser, info,
                                              limiter=self._limiter)

    async def _announce(self, zc: Zeroconf, old: ServiceInfo | None,
                        addrs: list[str]) -> ServiceInfo | None:
        """(Re-)register under this node's addresses; none (loopback only): withdraw."""
        if old is not None:
            await trio.to_thread.run_sync(zc.unregister_service, old, limiter=self._limiter)
        self.announced = addrs
        if not addrs:
            return None
        info = self._info(addrs)
        try:
            # Probing for a name conflict takes about 1.5 s; zeroconf blocks while it does.
            await trio.to_thread.run_sync(zc.register_service, info, limiter=self._limiter)
        except Exception as exc:  # zeroconf raises several unrelated types
            log.warning("mDNS announcement failed", extra={"error": str(exc)})
            self.announced = []
            return None
        log.info("announcing on the LAN", extra={"service": self.service_type, "addrs": addrs})
        return info

    @staticmethod
    def _close(zc: Zeroconf, browser: ServiceBrowser | None, info: ServiceInfo | None) -> None:
        if browser is not None:
            browser.cancel()
        if info is not None:
            zc.unregister_service(info)  # sends a goodbye, so peers forget this node at once
        zc.close()
