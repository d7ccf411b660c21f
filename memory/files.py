"""Writing a file so that a crash leaves the old content or the new, never half of either.

Every state file of a node goes through :func:`write_atomic`: the identity key and API token,
the daemon's runtime file, the trust state and the ingest manifest. It lives here, in the
lowest layer that writes files, so that ``meshnode`` and ``memory`` share one copy.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def write_atomic(path: Path, data: bytes | str, *, private: bool = False) -> None:
    """Replace ``path`` with ``data`` (str is written as UTF-8).

    The data goes to a new temporary file beside ``path``, is flushed to disk (fsync), and
    the file is renamed over ``path``; then the folder is fsynced so that the rename itself
    survives a power cut. A ``private`` file is created with mode 0600 from the start, so a
    secret is never readable by others, not even briefly. Blocking: call it from a thread in
    trio code.
    """
    content = data.encode("utf-8") if isinstance(data, str) else data
    # A random name: two writers of the same file never share (and truncate) one temp file.
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # a platform or file system that cannot open folders: rename is done
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
