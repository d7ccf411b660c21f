"""Readiness and stopping notifications for systemd (``Type=notify``), with no dependency.

systemd passes ``$NOTIFY_SOCKET``: a datagram Unix socket, as a path or, when it starts with
``@``, in the abstract namespace. The daemon sends ``READY=1`` once its API answers and
``STOPPING=1`` when it begins to shut down. Without the variable this does nothing.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(state: str, environ: dict[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1\\nSTATUS=..."``) to systemd; True if it was sent."""
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        log.warning("ignoring NOTIFY_SOCKET that is not a Unix socket path",
                    extra={"notify_socket": address})
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("could not notify systemd", extra={"error": str(exc)})
        return False
    return True
