"""Child daemons that never outlive the command that started them (``meshnode demo``).

Two guards: the command stops its children on SIGTERM, SIGHUP and SIGINT (Ctrl-C), by
turning each into :class:`Stopped` so that its ``finally`` runs; and each child asks Linux
to send it SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), which covers the one case
no handler sees, a SIGKILL of the command. Children run in their own session, so a signal
sent to the terminal's process group reaches the command only, which stops them in order.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

PR_SET_PDEATHSIG = 1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class Stopped(BaseException):  # a request, like KeyboardInterrupt, so not an Exception
    """The command was asked to stop by a signal (as KeyboardInterrupt is for SIGINT)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def die_with_parent(parent: int) -> None:
    """``preexec_fn`` of a child: SIGTERM it when ``parent`` dies (Linux; elsewhere a no-op).

    ``parent`` is the starting process's PID: if it died between the fork and the prctl, the
    death signal would never come, so the child exits at once instead.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        return
    if os.getppid() != parent:
        os._exit(1)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM, SIGHUP and SIGINT raise :class:`Stopped` (once: a second
    signal while the ``finally`` blocks stop the children is ignored, so that cleanup is not
    itself interrupted). The previous handlers are restored on exit."""
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    def handler(signum: int, _: FrameType | None) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise Stopped(signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
