"""What a memory URI names, decided once for the whole program.

pymilvus reads a URI as a Milvus server when it starts with ``http://``, ``https://``,
``tcp://`` or ``unix:`` (a server's Unix socket); anything else is a Milvus Lite database
file. The node's config and the store both ask here, so they cannot disagree.

Cheap to import: no pymilvus.
"""

from __future__ import annotations

#: URI prefixes pymilvus connects to as a server (see ``pymilvus.client.connection_manager``).
SERVER_PREFIXES = ("http://", "https://", "tcp://", "unix:")


def is_server_uri(uri: str) -> bool:
    """Whether ``uri`` names a Milvus server (shared, no replication) rather than a Lite file."""
    return uri.startswith(SERVER_PREFIXES)


def redact(uri: str) -> str:
    """The uri without any password embedded in it (http://user:secret@host)."""
    scheme, sep, rest = uri.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri
