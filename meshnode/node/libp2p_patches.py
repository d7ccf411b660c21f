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
"""

from __future__ import annotations

import logging
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

log = logging.getLogger(__name__)
SUPPORTED_VERSION = "0.8.1"


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


def apply_patches(pubsub: Any) -> bool:
    """Apply every fix to a freshly built Pubsub; False (with a warning) if they do not fit."""
    installed = libp2p_version()
    if not patches_apply(installed):
        log.warning(
            "py-libp2p patches not applied: written for %s, found %s (gossip sequence "
            "numbers may repeat after a restart)", SUPPORTED_VERSION, installed,
        )
        return False
    seed_seqno(pubsub)
    return True
