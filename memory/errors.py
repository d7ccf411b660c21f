"""The exceptions of the memory package: one base class, a few precise subclasses.

Nothing from pymilvus, openai or sentence-transformers escapes this package: each of their
errors is translated into one of these, with a message a node operator can act on.
"""

from __future__ import annotations


class MemoryStoreError(Exception):
    """Base class of every error of the memory package: store, embedders, ingest, replication."""


class StoreUnavailable(MemoryStoreError):
    """The Milvus backend cannot be reached or opened, or did not answer in time."""


class BackendError(MemoryStoreError):
    """Milvus answered, but refused or failed an operation."""


class InvalidRecord(MemoryStoreError):
    """A record failed validation or signature checks, or belongs to another tenant."""


class EmbedderError(MemoryStoreError):
    """An embedder is misconfigured, not installed, or failed to embed."""


class IngestError(MemoryStoreError):
    """A path to ingest is missing, unreadable or unsupported, or the manifest is unreadable."""


class ReplicationError(MemoryStoreError):
    """A sync did not complete: the peer refused, misbehaved, went silent or went away."""


class EmbedderMismatch(MemoryStoreError):
    """A collection was built by another embedder than the one the store was opened with.

    Vectors of different embedders are not comparable, so searching one with the other
    would return garbage; the store refuses instead.
    """

    def __init__(
        self, collection: str, stored_name: str, stored_dim: int, name: str, dim: int
    ) -> None:
        super().__init__(
            f"collection {collection!r} was built with embedder {stored_name!r} "
            f"(dim {stored_dim}) but the store was opened with {name!r} (dim {dim}); "
            f"use {stored_name!r} or point the store at another database"
        )
        self.collection = collection
        self.stored_name = stored_name
        self.stored_dim = stored_dim
        self.name = name
        self.dim = dim
