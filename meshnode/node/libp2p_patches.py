"""Fixes to py-libp2p that belong upstream, carried here until a release has them.

Each fix is written against one py-libp2p release (``SUPPORTED_VERSION``) and applied when a
host starts. On any other version nothing is applied and a warning says so: the fixes
touch py-libp2p's internals, and a newer release may have fixed (or moved) them.

1. **Monotonic GossipSub sequence numbers.** The pubsub spec asks for "a linearly
   increasing 64-bit big-endian uint"; go-libp2p, rust-libp2p and js-libp2p start the
   counter at the current time in *nanoseconds* and add one per message. py-libp2p 0.8.1
   starts it at the time in *seconds*, so a node that published more than one message a
   second since it started (a burst of memory records, say) restarts with sequence
   numbers it has already used. The message ID is ``from + seqno``, so every peer that
   still remembers the old messages drops the new ones as duplicates, and a peer that
   enforces increasing seqnos (go-libp2p's ``BasicSeqnoValidator``, on by default in
   kubo) drops them for good.

Profiling an idle daemon in a 15-node mesh (bench/RESULTS.md, issue 12) put a fifth of its
busy time into two places that do the same work over and over:

2. **A yamux window update per read.** py-libp2p's yamux credits the sender's window after
   every read of a stream (its release-on-read and "partial slack" paths), so each small
   message read costs the reader a frame written back: a Noise encryption and a socket
   write. Here the window is credited as go-yamux does (``sendWindowUpdate``): once the
   missing credit reaches half the window, with py-libp2p's own auto-tuning of its size.
3. **A signature check per gossip RPC.** Pubsub verifies the sender's signed peer record on
   every RPC it receives (an Ed25519 verification and a peerstore update), although a peer
   sends the same record bytes with every message. Here a record is verified once per
   (host, peer, exact bytes) and again only after ``RECHECK_S``; any other bytes are
   verified as before.

Fix 1 is applied to each Pubsub; fixes 2 and 3 replace module attributes of py-libp2p,
once per process (the replaced function remembers the original, which is how a second call
knows).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

log = logging.getLogger(__name__)
SUPPORTED_VERSION = "0.8.1"
#: A verified peer record is trusted this long before it is verified (and stored) again.
RECHECK_S = 600.0
#: (host, peer, record) triples remembered.
MAX_RECORDS = 4096


def libp2p_version() -> str:
    try:
        return version("libp2p")
    except PackageNotFoundError:
        return "unknown"


def patches_apply(installed: str | None = None) -> bool:
    """Whether this module's fixes match the installed py-libp2p."""
    return (installed or libp2p_version()) == SUPPORTED_VERSION


def seed_seqno(pubsub: Any, now_ns: int | None = None) -> None:
    """Fix 1: start the pubsub's sequence numbers at the time in nanoseconds."""
    pubsub.counter = max(int(pubsub.counter), time.time_ns() if now_ns is None else now_ns)


async def _window_update(self: Any, *, bytes_read: int = 0) -> None:
    """Fix 2: YamuxStream._auto_tune_and_send_window_update, go-yamux's way: no update
    until half the window is missing (``bytes_read`` is already reflected in the buffer)."""
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
    """Fix 3: ``check`` (pubsub.maybe_consume_signed_record), once per exact record."""
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


def patch_modules() -> None:
    """Fixes 2 and 3 (the caller has checked the version); a second call changes nothing."""
    from libp2p.pubsub import pubsub
    from libp2p.stream_muxer.yamux import yamux

    yamux.YamuxStream._auto_tune_and_send_window_update = _window_update
    if not hasattr(pubsub.maybe_consume_signed_record, "original"):
        pubsub.maybe_consume_signed_record = _cached_record_check(
            pubsub.maybe_consume_signed_record)


def apply_patches(pubsub: Any) -> bool:
    """Apply every fix to a freshly built Pubsub; False (with a warning) if they do not fit."""
    installed = libp2p_version()
    if not patches_apply(installed):
        log.warning(
            "py-libp2p patches not applied: written for %s, found %s (gossip sequence "
            "numbers may repeat after a restart; a window update per yamux read; a "
            "signature check per gossip RPC)", SUPPORTED_VERSION, installed,
        )
        return False
    patch_modules()
    seed_seqno(pubsub)
    return True
