"""Two costs of py-libp2p 0.8.1 that grow with traffic, removed by a small patch.

Profiling an idle daemon in a 15-node mesh (bench/RESULTS.md) put a fifth of its busy time
into two places that do the same work over and over:

1. **A yamux window update per read.** py-libp2p's yamux credits the sender's window after
   every read of a stream (its release-on-read and "partial slack" paths), so each small
   message read costs the reader a frame written back: a Noise encryption and a socket
   write. Here the window is credited as go-yamux does (``sendWindowUpdate``): once the
   missing credit reaches half the window, with py-libp2p's own auto-tuning of its size.
2. **A signature check per gossip RPC.** Pubsub verifies the sender's signed peer record on
   every RPC it receives (an Ed25519 verification and a peerstore update), although a peer
   sends the same record bytes with every message. Here a record is verified once per
   (host, peer, exact bytes) and again only after ``RECHECK_S``; any other bytes are
   verified as before.

:func:`apply` patches module attributes of py-libp2p, only for the version it was written
against (``PATCHED_VERSION``); on any other it changes nothing and says so. It is kept apart
from any other py-libp2p patches so that each can go when upstream fixes its issue.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

log = logging.getLogger(__name__)
PATCHED_VERSION = "0.8.1"
#: A verified peer record is trusted this long before it is verified (and stored) again.
RECHECK_S = 600.0
#: (host, peer, record) triples remembered.
MAX_RECORDS = 4096

_state: dict[str, bool] = {}


async def _window_update(self: Any, *, bytes_read: int = 0) -> None:
    """YamuxStream._auto_tune_and_send_window_update, go-yamux's way: no update until
    half the window is missing (``bytes_read`` is already reflected in the buffer)."""
    total = 0
    async with self.window_lock:
        buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
        delta = self.target_recv_window - (self.recv_window + buffered)
        if delta > 0 and delta >= self._grow_threshold():
            total = self._grow_to_delta(buffered) + self._apply_autotune_epoch(buffered)
            self._pending_recv_release = 0
    if total > 0:
        await self.send_window_update(total, skip_lock=True)


def _cached_record_check(
    check: Callable[[Any, Any, Any], bool],
) -> Callable[[Any, Any, Any], bool]:
    verified: OrderedDict[tuple[bytes, bytes, bytes], float] = OrderedDict()

    def maybe_consume_signed_record(msg: Any, host: Any, peer_id: Any) -> bool:
        if not msg.HasField("senderRecord"):
            return True
        key = (host.get_id().to_bytes(), peer_id.to_bytes(), bytes(msg.senderRecord))
        now = time.monotonic()
        at = verified.get(key)
        if at is not None and now - at < RECHECK_S:
            verified.move_to_end(key)
            return True
        ok = check(msg, host, peer_id)
        if ok:
            verified[key] = now
            verified.move_to_end(key)
            while len(verified) > MAX_RECORDS:
                verified.popitem(last=False)
        return ok

    maybe_consume_signed_record.original = check  # type: ignore[attr-defined]
    return maybe_consume_signed_record


def apply() -> bool:
    """Patch py-libp2p if it is the version these patches are for; True if patched."""
    if "applied" in _state:
        return _state["applied"]
    found = version("libp2p")
    if found != PATCHED_VERSION:
        log.warning("py-libp2p %s is not %s: its yamux window updates and peer-record checks "
                    "are left as they are", found, PATCHED_VERSION)
        _state["applied"] = False
        return False
    from libp2p.pubsub import pubsub
    from libp2p.stream_muxer.yamux import yamux

    yamux.YamuxStream._auto_tune_and_send_window_update = _window_update
    pubsub.maybe_consume_signed_record = _cached_record_check(pubsub.maybe_consume_signed_record)
    _state["applied"] = True
    return True
